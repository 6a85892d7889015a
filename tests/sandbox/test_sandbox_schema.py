"""Drift between the sandbox and OVHcloud's published schema fails here.

Walks ``sms.json``: every route the sandbox serves must be an operation of the schema with the
same method and response type; every parameter it accepts must be the schema's, with the same
type and required flag (and the other way round); every answer it gives, called through
python-ovh, must fit the response model: known fields only, compatible types, enum values,
null only where the schema allows it. The type checker below is written for this test, apart
from the sandbox's own validation. Routes from another of OVH's schemas (the credit orders of
``order.json``) must say so (``Route.source``), must not be in ``sms.json``, and are checked the
same way against this test's transcription of that schema (``order_schema.py``).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ovh_sandbox.handler import SERVED
from ovh_sandbox.schema import load
from tests.sandbox import order_schema

pytestmark = pytest.mark.timeout(30)

PACKAGE_COPY = Path(__file__).resolve().parents[2] / "ovh_sandbox" / "sms.json"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "ovh-api" / "sms.json"

SCHEMA = json.loads(PACKAGE_COPY.read_text(encoding="utf-8"))
SMS_OPERATIONS = {(op["httpMethod"], api["path"]): op for api in SCHEMA["apis"] for op in api["operations"]}
#: Every operation the sandbox may serve, by the schema it comes from.
SOURCES = {"sms.json": SMS_OPERATIONS, "order.json": order_schema.OPERATIONS}
OPERATIONS = {**SMS_OPERATIONS, **order_schema.OPERATIONS}
MODELS = {**order_schema.MODELS, **SCHEMA["models"]}
ROUTES = SERVED
PRIMITIVES = {"string", "text", "password", "long", "double", "boolean", "datetime", "uuid", "ip"}

#: Fields the real API leaves out of an answer at times: a report has no tag when none was given.
MAY_BE_ABSENT = {("sms.SmsSendingReport", "tag")}


def test_the_package_copy_is_the_shared_schema() -> None:
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is not here (a fresh install): nothing to compare with")
    assert PACKAGE_COPY.read_bytes() == SHARED.read_bytes(), "refresh ovh_sandbox/sms.json from shared/"


def test_the_sandbox_loads_the_package_copy() -> None:
    assert load().raw == SCHEMA


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_each_route_is_a_schema_operation_with_its_parameters(route) -> None:
    assert route.source in SOURCES, f"{route.method} {route.path}: unknown source {route.source}"
    if route.source != "sms.json":  # declared as coming from elsewhere: it must not be in sms.json
        assert (route.method, route.path) not in SMS_OPERATIONS
    operation = SOURCES[route.source].get((route.method, route.path))
    assert operation is not None, f"{route.method} {route.path} is not in {route.source}"
    assert route.response_type == operation["responseType"]
    assert route.auth == (not operation.get("noAuthentication", False))
    schema_params = {
        (p.get("name"), p["paramType"]): (p["dataType"], bool(p.get("required"))) for p in operation["parameters"]
    }
    sandbox_params = {(p.name, p.param_type): (p.data_type, p.required) for p in route.params}
    assert sandbox_params == schema_params


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_each_declared_type_is_known_to_the_schema(route) -> None:
    for param in route.params:
        base = param.data_type.removesuffix("[]")
        assert base in PRIMITIVES or base.startswith("map[") or base in MODELS, param


def conforms(value: Any, type_name: str, where: str, nullable: bool = False) -> list[str]:
    """Why ``value`` does not fit ``type_name`` of the schema (nothing when it does)."""
    if type_name == "void":
        return [] if value is None else [f"{where}: void expected, got {value!r}"]
    if value is None:
        return [] if nullable else [f"{where}: null where the schema says canBeNull false"]
    if type_name.endswith("[]"):
        if not isinstance(value, list):
            return [f"{where}: array expected"]
        return [e for i, item in enumerate(value) for e in conforms(item, type_name[:-2], f"{where}[{i}]")]
    if type_name.startswith("map[string]"):
        if not isinstance(value, dict):
            return [f"{where}: map expected"]
        return [e for k, v in value.items() for e in conforms(v, type_name[len("map[string]") :], f"{where}.{k}")]
    checks = {
        "string": lambda v: isinstance(v, str),
        "text": lambda v: isinstance(v, str),
        "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "double": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "datetime": lambda v: isinstance(v, str) and datetime.fromisoformat(v).tzinfo is not None,
        "uuid": lambda v: isinstance(v, str) and str(uuid.UUID(v)) == v,
    }
    if type_name in checks:
        return [] if checks[type_name](value) else [f"{where}: {value!r} is not a {type_name}"]
    model = MODELS.get(type_name)
    if model is None:
        return [f"{where}: unknown type {type_name}"]
    if "enum" in model:
        return [] if str(value) in model["enum"] else [f"{where}: {value!r} not in {type_name}"]
    if not isinstance(value, dict):
        return [f"{where}: object {type_name} expected"]
    errors = [f"{where}.{key}: not a property of {type_name}" for key in value if key not in model["properties"]]
    for name, prop in model["properties"].items():
        if name not in value:
            if (type_name, name) not in MAY_BE_ABSENT:
                errors.append(f"{where}.{name}: missing ({type_name})")
            continue
        errors += conforms(value[name], prop["type"], f"{where}.{name}", prop.get("canBeNull", False))
    return errors


def test_every_answer_fits_its_response_model(make_sandbox, clients, documents) -> None:
    # Given a sandbox with something behind every route
    sb = make_sandbox(delivery_delay_s=(0.01, 0.02))
    client = clients(sb)
    sn = sb.service_name
    fr = "+33612345678"
    sb.control.add_blacklist(sn, fr)
    sb.control.add_account("sms-other-1", credits=0)
    incoming = sb.control.add_incoming(sn, fr, "STOP", tag="t")
    job = {"message": "Hi", "receivers": [fr], "sender": "SANDBOX", "tag": "t"}
    client.post(f"/sms/{sn}/users", login="alice", password="abcd1234")
    client.put(f"/sms/{sn}/users/alice", quotaInformations={"quotaStatus": "active", "quotaLeft": 100})
    differed = client.post(f"/sms/{sn}/jobs", differedPeriod=30, **job)["ids"][0]
    user_differed = client.post(f"/sms/{sn}/users/alice/jobs", differedPeriod=30, **job)["ids"][0]
    csv_url = documents.put("/slot.csv", "number;name\n+33612345679;Ann\n")
    slot = {"slotId": 1, "description": "d", "autoUpdate": False, "csvUrl": csv_url}
    time.sleep(0.1)  # the jobs below have their final receipts when read
    # When every route is called (deletions last)
    samples: list[tuple[str, str, str, dict[str, Any]]] = [
        ("GET", "/sms", "/sms", {}),
        ("GET", "/sms/{serviceName}", f"/sms/{sn}", {}),
        ("PUT", "/sms/{serviceName}", f"/sms/{sn}", {"callBack": "https://example.com/dlr"}),
        ("POST", "/sms/{serviceName}/jobs", f"/sms/{sn}/jobs", job),
        ("POST", "/sms/{serviceName}/users/{login}/jobs", f"/sms/{sn}/users/alice/jobs", job),
        ("GET", "/sms/{serviceName}/jobs", f"/sms/{sn}/jobs", {}),
        ("GET", "/sms/{serviceName}/jobs/{id}", f"/sms/{sn}/jobs/{differed}", {}),
        ("GET", "/sms/{serviceName}/users/{login}/jobs", f"/sms/{sn}/users/alice/jobs", {}),
        ("GET", "/sms/{serviceName}/users/{login}/jobs/{id}", f"/sms/{sn}/users/alice/jobs/{user_differed}", {}),
        ("GET", "/sms/{serviceName}/outgoing", f"/sms/{sn}/outgoing", {"tag": "t"}),
        ("GET", "/sms/{serviceName}/users/{login}/outgoing", f"/sms/{sn}/users/alice/outgoing", {}),
        ("GET", "/sms/{serviceName}/users", f"/sms/{sn}/users", {}),
        ("GET", "/sms/{serviceName}/users/{login}", f"/sms/{sn}/users/alice", {}),
        ("GET", "/sms/{serviceName}/senders", f"/sms/{sn}/senders", {}),
        ("GET", "/sms/{serviceName}/senders/{sender}", f"/sms/{sn}/senders/SANDBOX", {}),
        ("GET", "/sms/{serviceName}/blacklists", f"/sms/{sn}/blacklists", {}),
        ("GET", "/sms/{serviceName}/blacklists/{number}", f"/sms/{sn}/blacklists/%2B33612345678", {}),
        ("GET", "/sms/{serviceName}/incoming", f"/sms/{sn}/incoming", {}),
        ("GET", "/sms/{serviceName}/incoming/{id}", f"/sms/{sn}/incoming/{incoming}", {}),
        ("GET", "/sms/ptts", "/sms/ptts", {"ptt": 4}),
        ("POST", "/sms/estimate", "/sms/estimate", {"message": "Hi", "noStopClause": False, "senderType": "alpha"}),
        ("GET", "/sms/rates/destinations", "/sms/rates/destinations", {"country": "fr"}),
        ("POST", "/sms/{serviceName}/users", f"/sms/{sn}/users", {"login": "bob", "password": "abcd1234"}),
        ("POST", "/sms/{serviceName}/senders", f"/sms/{sn}/senders", {"sender": "NewShop", "reason": "our shop"}),
        (
            "POST",
            "/sms/{serviceName}/transferCredits",
            f"/sms/{sn}/transferCredits",
            {"credits": 10.0, "smsAccountTarget": "sms-other-1"},
        ),
        ("GET", "/order/sms/{serviceName}/credits", f"/order/sms/{sn}/credits", {"quantity": 1000}),
        ("POST", "/order/sms/{serviceName}/credits", f"/order/sms/{sn}/credits", {"quantity": 1000}),
        ("PUT", "/sms/{serviceName}/users/{login}", f"/sms/{sn}/users/bob", {"callBack": "https://example.com"}),
        ("POST", "/sms/{serviceName}/receivers", f"/sms/{sn}/receivers", slot),
        ("POST", "/sms/{serviceName}/users/{login}/receivers", f"/sms/{sn}/users/alice/receivers", slot),
        ("GET", "/sms/{serviceName}/receivers", f"/sms/{sn}/receivers", {}),
        ("GET", "/sms/{serviceName}/users/{login}/receivers", f"/sms/{sn}/users/alice/receivers", {}),
        ("GET", "/sms/{serviceName}/receivers/{slotId}", f"/sms/{sn}/receivers/1", {}),
        ("GET", "/sms/{serviceName}/users/{login}/receivers/{slotId}", f"/sms/{sn}/users/alice/receivers/1", {}),
        ("GET", "/sms/{serviceName}/receivers/{slotId}/csv", f"/sms/{sn}/receivers/1/csv", {}),
        (
            "GET",
            "/sms/{serviceName}/users/{login}/receivers/{slotId}/csv",
            f"/sms/{sn}/users/alice/receivers/1/csv",
            {},
        ),
    ]
    answers = {}
    for method, template, path, kwargs in samples:
        answers[(method, template)] = getattr(client, method.lower())(path, **kwargs)
    outgoing = answers[("GET", "/sms/{serviceName}/outgoing")]
    user_outgoing = answers[("GET", "/sms/{serviceName}/users/{login}/outgoing")]
    alice_outgoing = f"/sms/{sn}/users/alice/outgoing/{user_outgoing[0]}"
    more = [
        ("GET", "/sms/{serviceName}/outgoing/{id}", f"/sms/{sn}/outgoing/{outgoing[0]}", {}),
        ("GET", "/sms/{serviceName}/users/{login}/outgoing/{id}", alice_outgoing, {}),
        ("DELETE", "/sms/{serviceName}/jobs/{id}", f"/sms/{sn}/jobs/{differed}", {}),
        ("DELETE", "/sms/{serviceName}/users/{login}/jobs/{id}", f"/sms/{sn}/users/alice/jobs/{user_differed}", {}),
        ("DELETE", "/sms/{serviceName}/outgoing/{id}", f"/sms/{sn}/outgoing/{outgoing[0]}", {}),
        ("DELETE", "/sms/{serviceName}/users/{login}/outgoing/{id}", alice_outgoing, {}),
        ("DELETE", "/sms/{serviceName}/users/{login}", f"/sms/{sn}/users/bob", {}),
        ("DELETE", "/sms/{serviceName}/senders/{sender}", f"/sms/{sn}/senders/NewShop", {}),
        ("DELETE", "/sms/{serviceName}/receivers/{slotId}", f"/sms/{sn}/receivers/1", {}),
        ("DELETE", "/sms/{serviceName}/users/{login}/receivers/{slotId}", f"/sms/{sn}/users/alice/receivers/1", {}),
    ]
    for method, template, path, kwargs in more:
        answers[(method, template)] = getattr(client, method.lower())(path, **kwargs)
    # Then every route was called, and every answer fits the schema's response type
    assert set(answers) == {(r.method, r.path) for r in ROUTES}
    errors = []
    for (method, template), answer in answers.items():
        response_type = OPERATIONS[(method, template)]["responseType"]
        errors += conforms(answer, response_type, f"{method} {template}")
    assert errors == []
    # (and the checks above did look at real content)
    assert answers[("GET", "/sms/{serviceName}/outgoing/{id}")]["deliveredAt"] is not None
    assert answers[("POST", "/order/sms/{serviceName}/credits")]["orderId"] is not None


def test_the_checker_catches_drift() -> None:
    assert conforms({"ids": [1], "creditsLeft": 3}, "sms.SmsSendingReport", "r") != []
    assert conforms({"charactersClass": "8bits"}, "sms.JobEstimate", "e") != []
    assert conforms({"quotaLeft": "3", "quotaStatus": "active"}, "sms.Quota", "q") != []
    assert conforms({"quotaLeft": 3.0, "quotaStatus": "active"}, "sms.Quota", "q") == []
    # and the transcription of order.json is read the same way
    price = {"currencyCode": "EUR", "text": "1.00 \u20ac", "value": 1.0}
    prices = {"originalWithoutTax": None, "reduction": None, "tax": price, "withTax": price, "withoutTax": price}
    order = {"contracts": [], "details": [], "orderId": None, "prices": prices, "url": None}
    assert conforms(order, "order.Order", "o") == []
    assert conforms({**order, "orderId": "90000001"}, "order.Order", "o") != []
    assert conforms({**order, "prices": {**prices, "tax": None}}, "order.Order", "o") != []
