"""The OVH surface the sandbox serves: each route, the parameters it accepts, its handler.

Paths, parameter names, types and response types are written here as the schema has them; a
test walks ``sms.json`` and fails when one of them drifts. Routes of the schema the sandbox does
not serve answer 501; paths the schema does not have answer 404. The account administration
routes (senders, credits: ``ovh_sandbox.admin``) are declared the same way; the order routes
there come from OVH's ``order.json``, not ``sms.json``, and say so (``Route.source``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from ovh_sandbox import billing, bulk, delivery
from ovh_sandbox.ovh_errors import OvhError, bad_request
from ovh_sandbox.schema import Schema
from ovh_sandbox.state import Outgoing, SandboxState
from ovh_sandbox.validation import Param, check_query

#: Types of the path parameters, as the schema declares them.
PATH_TYPES = {
    "serviceName": "string",
    "login": "string",
    "id": "long",
    "sender": "string",
    "number": "string",
    "slotId": "long",
}


@dataclass
class Call:
    """One call reaching a handler, its parameters validated."""

    state: SandboxState
    path: dict[str, Any]
    params: dict[str, Any]
    call_id: int | None = None
    credits_removed: float = 0.0

    @property
    def service(self) -> str:
        return self.path["serviceName"]  # type: ignore[no-any-return]

    @property
    def login(self) -> str | None:
        return self.path.get("login")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the schema's template, e.g. /sms/{serviceName}/jobs/{id}
    response_type: str
    query_body: tuple[Param, ...]
    handler: Callable[[Call], Any] = field(compare=False)
    auth: bool = True
    #: The published schema the route comes from: ``sms.json``, or another of OVH's (``order.json``
    #: for the order routes of ``ovh_sandbox.admin``), written down with its source where declared.
    source: str = "sms.json"

    @property
    def params(self) -> tuple[Param, ...]:
        names = re.findall(r"{(\w+)}", self.path)
        return tuple(Param(n, PATH_TYPES[n], "path", True) for n in names) + self.query_body

    @property
    def is_jobs_post(self) -> bool:
        return self.method == "POST" and self.path.endswith("/jobs")


def _q(name: str, data_type: str, required: bool = False) -> Param:
    return Param(name, data_type, "query", required)


def _b(name: str | None, data_type: str, required: bool = False) -> Param:
    return Param(name, data_type, "body", required)


JOB_BODY = (
    _b("charset", "sms.CharsetEnum"),
    _b("class", "sms.ClassEnum"),
    _b("coding", "sms.CodingEnum"),
    _b("differedPeriod", "long"),
    _b("message", "string", required=True),
    _b("noStopClause", "boolean"),
    _b("priority", "sms.PriorityEnum"),
    _b("receivers", "string[]"),
    _b("receiversDocumentUrl", "string"),
    _b("receiversSlotId", "string"),
    _b("sender", "string"),
    _b("senderForResponse", "boolean"),
    _b("tag", "string"),
    _b("validityPeriod", "long"),
)

USER_OUTGOING_QUERY = (
    _q("deliveryReceipt", "long"),
    _q("differedDelivery", "long"),
    _q("ptt", "long"),
    _q("receiver", "string"),
    _q("sender", "string"),
    _q("tag", "string"),
)

OUTGOING_QUERY = (
    _q("batchID", "uuid"),
    _q("creationDatetime.from", "datetime"),
    _q("creationDatetime.to", "datetime"),
    _q("messageID", "uuid"),
    *USER_OUTGOING_QUERY,
)


# -- handlers -----------------------------------------------------------------------------------


def _send(call: Call) -> dict[str, Any]:
    if call.params.get("receiversDocumentUrl") or call.params.get("receiversSlotId"):
        return bulk.desk(call.state).submit(call.service, call.login, call.params, call.call_id)
    report = call.state.send(call.service, call.login, call.params, call.call_id)
    call.credits_removed = report["totalCreditsRemoved"]
    return report


def _outgoing_ids(call: Call) -> list[int]:
    p = call.params
    filters = Outgoing(
        receiver=p.get("receiver"),
        tag=p.get("tag"),
        sender=p.get("sender"),
        batch_id=p.get("batchID"),
        message_id=p.get("messageID"),
        created_from=p.get("creationDatetime.from"),
        created_to=p.get("creationDatetime.to"),
        delivery_receipt=p.get("deliveryReceipt"),
        ptt=p.get("ptt"),
        differed_delivery=p.get("differedDelivery"),
    )
    return call.state.outgoing_ids(call.service, call.login, filters)


def _ptt(call: Call) -> dict[str, Any]:
    code = call.params["ptt"]
    known = delivery.PTTS.get(code)
    if known is None:
        raise OvhError(404, f"The ptt {code} does not exist")
    description, duration = known
    return {"comment": description, "description": description, "duration": duration}


def _estimate(call: Call) -> dict[str, Any]:
    return billing.estimate(call.params["message"], call.params["noStopClause"]).as_job_estimate()


def _destination_rate(call: Call) -> dict[str, Any]:
    country = call.params["country"]
    if country == "all":
        raise bad_request("[country] Rates are given for one destination, not 'all'")
    rate = billing.rate(country)
    price = round(rate * billing.CREDIT_PRICE_EUR, 4)
    return {
        "country": billing.country_name(country),
        "countryCode": country,
        "credit": rate,
        "price": {"currencyCode": "EUR", "text": f"{price:.4f} €", "value": price},
    }


def _blacklists(call: Call) -> list[str]:
    if "batchID" in call.params or "smsOutgoingID" in call.params:
        return []  # the sandbox's blacklist entries come from neither a batch nor an SMS
    return call.state.blacklists(call.service)


def _incoming_ids(call: Call) -> list[int]:
    p = call.params
    return call.state.incoming_ids(
        call.service, p.get("sender"), p.get("tag"), p.get("creationDatetime.from"), p.get("creationDatetime.to")
    )


def _create_user(call: Call) -> None:
    call.state.create_user(call.service, call.params["login"], call.params["password"])


SN = "/sms/{serviceName}"
USER = SN + "/users/{login}"

SLOT_BODY = (
    _b("autoUpdate", "boolean", True),
    _b("csvUrl", "string"),
    _b("description", "string", True),
    _b("documentId", "string"),
    _b("slotId", "long", True),
)


def _slot_routes(base: str) -> tuple[Route, ...]:
    """The receivers slots of the account (``base`` SN) or of an API user (USER): ``ovh_sandbox.bulk``."""
    slot = base + "/receivers/{slotId}"
    return (
        Route("GET", base + "/receivers", "long[]", (), lambda c: bulk.desk(c.state).slot_ids(c.service, c.login)),
        Route(
            "POST",
            base + "/receivers",
            "sms.Receiver",
            SLOT_BODY,
            lambda c: bulk.desk(c.state).create_slot(c.service, c.login, c.params),
        ),
        Route(
            "GET",
            slot,
            "sms.Receiver",
            (),
            lambda c: bulk.desk(c.state).slot_view(c.service, c.login, c.path["slotId"]),
        ),
        Route(
            "DELETE", slot, "void", (), lambda c: bulk.desk(c.state).delete_slot(c.service, c.login, c.path["slotId"])
        ),
        Route(
            "GET",
            slot + "/csv",
            "string",
            (),
            lambda c: bulk.desk(c.state).slot_csv(c.service, c.login, c.path["slotId"]),
        ),
    )


ROUTES: tuple[Route, ...] = (
    Route(
        "GET", "/sms", "string[]", (_q("iamTags", "map[string][]iam.resource.TagFilter"),), lambda c: c.state.services()
    ),
    Route("GET", SN, "sms.AccountWithIAM", (), lambda c: c.state.account_view(c.service)),
    Route(
        "PUT",
        SN,
        "void",
        (_b(None, "sms.Account", True),),
        lambda c: c.state.update_account(c.service, c.params["body"]),
    ),
    # jobs, for the account and for an API user
    Route("GET", SN + "/jobs", "long[]", (), lambda c: c.state.pending_jobs(c.service, None)),
    Route("POST", SN + "/jobs", "sms.SmsSendingReport", JOB_BODY, _send),
    Route("GET", SN + "/jobs/{id}", "sms.Job", (), lambda c: c.state.job_view(c.service, None, c.path["id"])),
    Route("DELETE", SN + "/jobs/{id}", "void", (), lambda c: c.state.cancel_job(c.service, None, c.path["id"])),
    Route("GET", USER + "/jobs", "long[]", (), lambda c: c.state.pending_jobs(c.service, c.login)),
    Route("POST", USER + "/jobs", "sms.SmsSendingReport", JOB_BODY, _send),
    Route("GET", USER + "/jobs/{id}", "sms.Job", (), lambda c: c.state.job_view(c.service, c.login, c.path["id"])),
    Route("DELETE", USER + "/jobs/{id}", "void", (), lambda c: c.state.cancel_job(c.service, c.login, c.path["id"])),
    # outgoing SMS
    Route("GET", SN + "/outgoing", "long[]", OUTGOING_QUERY, _outgoing_ids),
    Route(
        "GET", SN + "/outgoing/{id}", "sms.Outgoing", (), lambda c: c.state.outgoing_view(c.service, None, c.path["id"])
    ),
    Route(
        "DELETE", SN + "/outgoing/{id}", "void", (), lambda c: c.state.delete_outgoing(c.service, None, c.path["id"])
    ),
    Route("GET", USER + "/outgoing", "long[]", USER_OUTGOING_QUERY, _outgoing_ids),
    Route(
        "GET",
        USER + "/outgoing/{id}",
        "sms.Outgoing",
        (),
        lambda c: c.state.outgoing_view(c.service, c.login, c.path["id"]),
    ),
    Route(
        "DELETE",
        USER + "/outgoing/{id}",
        "void",
        (),
        lambda c: c.state.delete_outgoing(c.service, c.login, c.path["id"]),
    ),
    # API users
    Route("GET", SN + "/users", "string[]", (), lambda c: c.state.users(c.service)),
    Route("POST", SN + "/users", "void", (_b("login", "string", True), _b("password", "string", True)), _create_user),
    Route("GET", USER, "sms.User", (), lambda c: c.state.user_view(c.service, c.path["login"])),
    Route(
        "PUT",
        USER,
        "void",
        (_b(None, "sms.User", True),),
        lambda c: c.state.update_user(c.service, c.path["login"], c.params["body"]),
    ),
    Route("DELETE", USER, "void", (), lambda c: c.state.delete_user(c.service, c.path["login"])),
    # senders, blacklists, incoming
    Route("GET", SN + "/senders", "string[]", (), lambda c: c.state.senders(c.service)),
    Route(
        "GET", SN + "/senders/{sender}", "sms.Sender", (), lambda c: c.state.sender_view(c.service, c.path["sender"])
    ),
    Route("GET", SN + "/blacklists", "string[]", (_q("batchID", "uuid"), _q("smsOutgoingID", "long")), _blacklists),
    Route(
        "GET",
        SN + "/blacklists/{number}",
        "sms.Blacklist",
        (),
        lambda c: c.state.blacklist_view(c.service, c.path["number"]),
    ),
    Route(
        "GET",
        SN + "/incoming",
        "long[]",
        (
            _q("creationDatetime.from", "datetime"),
            _q("creationDatetime.to", "datetime"),
            _q("sender", "string"),
            _q("tag", "string"),
        ),
        _incoming_ids,
    ),
    Route("GET", SN + "/incoming/{id}", "sms.Incoming", (), lambda c: c.state.incoming_view(c.service, c.path["id"])),
    # receivers slots (the bulk route), for the account and for an API user
    *_slot_routes(SN),
    *_slot_routes(USER),
    # account-independent helpers
    Route("GET", "/sms/ptts", "sms.PttDetails", (_q("ptt", "long", True),), _ptt),
    Route(
        "POST",
        "/sms/estimate",
        "sms.JobEstimate",
        (
            _b("message", "text", True),
            _b("noStopClause", "boolean", True),
            _b("senderType", "sms.TypeSenderEnum", True),
        ),
        _estimate,
    ),
    Route(
        "GET",
        "/sms/rates/destinations",
        "sms.DestinationRates",
        (_q("billingCountry", "sms.BillingCountryEnum"), _q("country", "sms.CountryEnum", True)),
        _destination_rate,
        auth=False,
    ),
)


class Router:
    """Finds the route of a path; 404 for a path the API does not have, 501 for one not served.

    Literal segments win over parameters (``/sms/ptts`` is not the account ``ptts``), so the
    served routes and the schema's other operations are tried together, most literal first.
    """

    def __init__(self, routes: tuple[Route, ...], schema: Schema) -> None:
        self.schema = schema
        served = {(r.method, r.path): r for r in routes}
        templates = {(method, path) for method, path in schema.operations()} | set(served)
        ordered = sorted(templates, key=lambda mp: _specificity(mp[1]))
        self._table: list[tuple[re.Pattern[str], str, str, Route | None]] = [
            (self._compile(path), method, path, served.get((method, path))) for method, path in ordered
        ]

    @staticmethod
    def _compile(template: str) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")

    def match(self, method: str, path: str) -> tuple[Route, dict[str, Any]]:
        for pattern, route_method, template, route in self._table:
            if route_method != method or not (found := pattern.match(path)):
                continue
            if route is None:
                raise OvhError(501, f"The sandbox does not implement {method} {template}")
            values = {
                name: check_query(name, unquote(raw), PATH_TYPES[name], self.schema)
                for name, raw in found.groupdict().items()
            }
            return route, values
        raise OvhError(404, "Got an invalid (or empty) URL")


def _specificity(template: str) -> tuple[int, ...]:
    return tuple(1 if segment.startswith("{") else 0 for segment in template.split("/"))
