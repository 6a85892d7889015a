"""OVHcloud's published SMS API schema, as shipped inside the package.

``sms.json`` beside this module is a verbatim copy of ``shared/ovh-api/sms.json`` (the document
served at ``/1.0/sms.json``), so the sandbox works from a fresh install. The sandbox takes enum
values and model properties from it; its routes and their parameters are declared in
``api.py`` and a test checks them against this file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Schema:
    raw: dict[str, Any]

    @property
    def models(self) -> dict[str, Any]:
        return self.raw["models"]  # type: ignore[no-any-return]

    def enum(self, type_name: str) -> list[str] | None:
        model = self.models.get(type_name)
        return model.get("enum") if model else None

    def enum_type(self, type_name: str) -> str | None:
        """What an enum's values are (``string``, ``long``...), or None for a type that is no enum."""
        model = self.models.get(type_name)
        return model.get("enumType") if model and "enum" in model else None

    def properties(self, type_name: str) -> dict[str, Any] | None:
        model = self.models.get(type_name)
        return model.get("properties") if model else None

    def operations(self) -> dict[tuple[str, str], dict[str, Any]]:
        """``{(METHOD, path template): operation}`` for every operation in the schema."""
        return {(op["httpMethod"], api["path"]): op for api in self.raw["apis"] for op in api["operations"]}


@cache
def load() -> Schema:
    text = resources.files(__package__).joinpath("sms.json").read_text(encoding="utf-8")
    return Schema(json.loads(text))
