"""Checking a request's parameters against the declared ones, types and enums from the schema.

Unknown parameters, a missing required one, a value of the wrong type or outside its enum are
answered with 400 (``BadParametersError`` in python-ovh). Query values arrive as strings and are
converted (``long`` to ``int``, ``datetime`` to an aware ``datetime``, booleans from
``true``/``false`` as python-ovh writes them). A JSON ``null`` for an optional body parameter
counts as absent.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ovh_sandbox.ovh_errors import bad_request
from ovh_sandbox.schema import Schema

_LONG = re.compile(r"-?[0-9]+")
_STRINGS = {"string", "text", "password", "internationalPhoneNumber", "ip"}


@dataclass(frozen=True)
class Param:
    """A parameter the sandbox accepts: ``name`` is ``None`` for a whole-model body (PUT)."""

    name: str | None
    data_type: str
    param_type: str  # "path", "query" or "body"
    required: bool = False


def parse_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check_query(name: str, raw: str, data_type: str, schema: Schema) -> Any:
    """The value of one query (or path) parameter, converted to its type."""
    try:
        if data_type == "long":
            if not _LONG.fullmatch(raw):
                raise ValueError
            return int(raw)
        if data_type == "double":
            return float(raw)
        if data_type == "boolean":
            if raw not in ("true", "false"):
                raise ValueError
            return raw == "true"
        if data_type == "datetime":
            return parse_datetime(raw)
        if data_type == "uuid":
            return str(uuid.UUID(raw))
    except ValueError:
        raise bad_request(f"[{name}] Given data ({raw}) is not a valid {data_type}") from None
    _check_enum(name, raw, data_type, schema)
    return raw


def check_body(name: str, value: Any, data_type: str, schema: Schema) -> Any:
    """``value`` itself when it fits ``data_type``; raises 400 otherwise."""
    if data_type.endswith("[]"):
        if not isinstance(value, list):
            raise bad_request(f"[{name}] Given data is not an array")
        return [check_body(f"{name}[{i}]", item, data_type[:-2], schema) for i, item in enumerate(value)]
    ok = True
    if data_type in _STRINGS:
        ok = isinstance(value, str)
    elif data_type == "long":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif data_type == "double":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif data_type == "boolean":
        ok = isinstance(value, bool)
    elif data_type == "datetime":
        ok = isinstance(value, str) and _parses(parse_datetime, value)
    elif data_type == "uuid":
        ok = isinstance(value, str) and _parses(uuid.UUID, value)
    elif data_type.startswith("map["):
        ok = isinstance(value, dict)
    elif schema.enum(data_type) is not None:
        # an enum of numbers (enumType long) also takes them as JSON numbers, as OVH's own clients send them
        numeric = schema.enum_type(data_type) == "long" and isinstance(value, int) and not isinstance(value, bool)
        if not (isinstance(value, str) or numeric):
            raise bad_request(f"[{name}] Given data ({value!r}) is not a {data_type.split('.')[-1]}")
        _check_enum(name, str(value), data_type, schema)
    elif (properties := schema.properties(data_type)) is not None:
        if not isinstance(value, dict):
            raise bad_request(f"[{name}] Given data is not an object of type {data_type}")
        for key, item in value.items():
            if key not in properties:
                raise bad_request(f"[{name}.{key}] Unknown property for type {data_type}")
            if item is not None:
                check_body(f"{name}.{key}", item, properties[key]["type"], schema)
    if not ok:
        raise bad_request(f"[{name}] Given data ({value!r}) is not a valid {data_type}")
    return value


def check_params(params: tuple[Param, ...], query: dict[str, list[str]], body: Any, schema: Schema) -> dict[str, Any]:
    """The validated query and body parameters of one call, by name (a model body under ``body``)."""
    declared = {p.name: p for p in params if p.param_type == "query"}
    values: dict[str, Any] = {}
    for name, raws in query.items():
        param = declared.get(name)
        if param is None:
            raise bad_request(f"[{name}] Unknown parameter")
        if len(raws) != 1:
            raise bad_request(f"[{name}] Given more than once")
        values[name] = check_query(name, raws[0], param.data_type, schema)
    body_params = [p for p in params if p.param_type == "body"]
    model = next((p for p in body_params if p.name is None), None)
    if model is not None:
        if not isinstance(body, dict):
            raise bad_request("Invalid JSON body: an object is expected")
        values["body"] = check_body("body", body, model.data_type, schema)
    elif body_params:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise bad_request("Invalid JSON body: an object is expected")
        by_name = {p.name: p for p in body_params}
        for name, value in body.items():
            param = by_name.get(name)
            if param is None:
                raise bad_request(f"[{name}] Unknown parameter")
            if value is not None:
                values[name] = check_body(name, value, param.data_type, schema)
    elif body not in (None, {}):
        raise bad_request("This call takes no body")
    for param in params:
        if param.required and param.param_type != "path" and param.name is not None and param.name not in values:
            raise bad_request(f"[{param.name}] Property is mandatory")
    return values


def _check_enum(name: str, value: str, data_type: str, schema: Schema) -> None:
    allowed = schema.enum(data_type)
    if allowed is not None and value not in allowed:
        short = data_type.split(".")[-1]
        raise bad_request(f"[{name}] Given data ({value}) does not belong to the {short} enumeration")


def _parses(parser: Any, value: str) -> bool:
    try:
        parser(value)
    except ValueError:
        return False
    return True
