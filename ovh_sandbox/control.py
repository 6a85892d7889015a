"""The control API under ``/_sandbox/`` (outside OVH's ``/1.0``) and its Python client.

Unsigned JSON over HTTP, never subject to injected latency or faults. Every input is checked;
a bad one gets 400 ``{"error": "..."}``.

=======  ===========================  =====================================================
method   path                         body / query -> answer
=======  ===========================  =====================================================
GET      /_sandbox/                   -> {"service_name", "base_path", "routes": ["GET /_sandbox/sent", ...]}
GET      /_sandbox/health             -> {"ok": true, "service_name", "base_path"}
GET      /_sandbox/sent               ?receiver=&service= -> [accepted SMS]
GET      /_sandbox/calls              -> [POST .../jobs calls]
GET      /_sandbox/counters           -> {jobs_calls, jobs_accepted, sms_sent, ...}
GET      /_sandbox/faults             -> current fault settings
PUT      /_sandbox/faults             {latency_ms, jitter_ms, faults, rate_limit_per_s, ...}
POST     /_sandbox/faults             one fault {kind, probability | next, scope, retry_after,
                                      delay_s, delay_max_s}
DELETE   /_sandbox/faults             no latency, no fault, no rate limit
POST     /_sandbox/reset              {accounts: bool}
PUT      /_sandbox/credits            {service, credits}
POST     /_sandbox/accounts           {service, credits}
PUT      /_sandbox/senders            {service, sender, status, comment?}: OVH's moderator
GET      /_sandbox/orders             -> [purchase orders: orderId, service, quantity, paid...]
POST     /_sandbox/orders/pay         {orderId} -> the order: paid, its credits on the account
PUT      /_sandbox/invalid-receivers  {receivers: [...]}
PUT      /_sandbox/failing-receivers  {receivers: {number: ptt}}
POST     /_sandbox/blacklists         {service, number}
POST     /_sandbox/incoming           {service, sender, message, tag} -> {id} (recorded only)
POST     /_sandbox/replies            {service, sender, message, tag?} -> {id, stop}: an SMS
                                      reaches the account: recorded, cgiUrl called, a STOP
                                      blacklisted and stopCallBack called
PUT      /_sandbox/callbacks          {duplicates, reorder} -> settings of the calls OVH makes
GET      /_sandbox/callbacks          -> [calls made: kind, sms_id, url, params, status, try]
GET      /_sandbox/receipts           -> [every SMS's receipt now: id, receiver, ptt, final...]
POST     /_sandbox/consumer-keys      {rules: [{method, path}]} -> {consumer_key}
DELETE   /_sandbox/consumer-keys/KEY
=======  ===========================  =====================================================
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from ovh_sandbox import admin
from ovh_sandbox.auth import METHODS, AccessRule, Authenticator
from ovh_sandbox.faults import FaultConfigError, FaultRule, Faults
from ovh_sandbox.handler import Reply, Request
from ovh_sandbox.ovh_errors import OvhError
from ovh_sandbox.schema import load
from ovh_sandbox.state import SandboxState
from ovh_sandbox.webhooks import CallbackSender

PREFIX = "/_sandbox"


class ControlError(ValueError):
    pass


class ControlApi:
    """Server side of the control API."""

    def __init__(self, state: SandboxState, faults: Faults, auth: Authenticator, callbacks: CallbackSender) -> None:
        self.state = state
        self.faults = faults
        self.auth = auth
        self.callbacks = callbacks
        self._routes: dict[tuple[str, str], Callable[[dict[str, Any], dict[str, list[str]]], Any]] = {
            ("GET", "/"): lambda b, q: self._index(),
            ("GET", "/health"): lambda b, q: {"ok": True, "service_name": self.state.service_name, "base_path": "/1.0"},
            ("GET", "/sent"): self._sent,
            ("GET", "/calls"): lambda b, q: self.state.call_records(),
            ("GET", "/counters"): lambda b, q: self.state.counters_view(),
            ("GET", "/faults"): lambda b, q: self.faults.snapshot(),
            ("PUT", "/faults"): self._set_faults,
            ("POST", "/faults"): self._add_fault,
            ("DELETE", "/faults"): self._clear_faults,
            ("POST", "/reset"): self._reset,
            ("PUT", "/credits"): self._set_credits,
            ("POST", "/accounts"): self._add_account,
            ("PUT", "/senders"): self._set_sender,
            ("PUT", "/invalid-receivers"): self._set_invalid,
            ("PUT", "/failing-receivers"): self._set_failing,
            ("POST", "/blacklists"): self._add_blacklist,
            ("POST", "/incoming"): self._add_incoming,
            ("POST", "/replies"): self._reply,
            ("PUT", "/callbacks"): self._set_callbacks,
            ("GET", "/callbacks"): lambda b, q: self.callbacks.calls_made(),
            ("GET", "/receipts"): lambda b, q: self.state.receipts(),
            ("POST", "/consumer-keys"): self._create_key,
            **admin.control_routes(state),
        }

    def _index(self) -> dict[str, Any]:
        """What ``GET /_sandbox/`` answers: the account served and every control route."""
        routes = sorted(
            {f"{method} {PREFIX}{path}" for method, path in self._routes} | {f"DELETE {PREFIX}/consumer-keys/KEY"}
        )
        return {"service_name": self.state.service_name, "base_path": "/1.0", "routes": routes}

    def __call__(self, request: Request) -> Reply:
        path, _, query_string = request.target.partition("?")
        path = path[len(PREFIX) :] or "/"
        try:
            body = json.loads(request.body) if request.body else {}
        except ValueError:
            return Reply(400, {"error": "invalid JSON body"})
        query = parse_qs(query_string, keep_blank_values=True)
        try:
            if request.method == "DELETE" and path.startswith("/consumer-keys/"):
                return Reply(200, {"revoked": self.auth.revoke(path.rsplit("/", 1)[1])})
            handler = self._routes.get((request.method, path))
            if handler is None:
                return Reply(404, {"error": f"no control route {request.method} {PREFIX}{path}"})
            if not isinstance(body, dict):
                raise ControlError("the body must be a JSON object")
            return Reply(200, handler(body, query))
        except (ControlError, FaultConfigError) as error:
            return Reply(400, {"error": str(error)})
        except OvhError as error:
            return Reply(error.status, {"error": error.message})

    def _sent(self, body: dict[str, Any], query: dict[str, list[str]]) -> Any:
        unknown = set(query) - {"receiver", "service"}
        if unknown:
            raise ControlError(f"unknown filter(s): {', '.join(sorted(unknown))}")
        receiver = query.get("receiver", [None])[-1]
        service = query.get("service", [None])[-1]
        return self.state.sent_records(receiver=receiver, service=service)

    def _set_faults(self, body: dict[str, Any], query: Any) -> Any:
        settings = dict(body)
        if "faults" in settings:
            rules = settings.pop("faults")
            if not isinstance(rules, list):
                raise ControlError("faults must be a list")
            settings["rules"] = rules
        elif "rules" in settings:
            raise ControlError("unknown setting(s): rules")
        for name in ("rate_limit_per_s", "rate_limit_burst"):
            if settings.get(name) == 0:
                settings[name] = None  # 0 turns the rate limit off
        self.faults.configure(**settings)
        return self.faults.snapshot()

    def _add_fault(self, body: dict[str, Any], query: Any) -> Any:
        self.faults.add(FaultRule.from_dict(body))
        return self.faults.snapshot()

    def _clear_faults(self, body: dict[str, Any], query: Any) -> Any:
        self.faults.clear()
        return self.faults.snapshot()

    def _reset(self, body: dict[str, Any], query: Any) -> Any:
        _fields(body, optional={"accounts": bool})
        self.faults.clear()
        self.faults.reseed()
        self.callbacks.reset()
        self.state.reset(accounts=bool(body.get("accounts", False)))
        return {"ok": True}

    def _set_credits(self, body: dict[str, Any], query: Any) -> Any:
        _fields(body, required={"service": str, "credits": float})
        if body["credits"] < 0:
            raise ControlError("credits must not be negative")
        self.state.set_credits(body["service"], body["credits"])
        return self.state.account_view(body["service"])

    def _add_account(self, body: dict[str, Any], query: Any) -> Any:
        _fields(body, required={"service": str}, optional={"credits": float})
        credits_left = body.get("credits", self.state.initial_credits)
        if not body["service"] or "/" in body["service"] or credits_left < 0:
            raise ControlError("service must be a non-empty name without '/', credits >= 0")
        self.state.add_account(body["service"], credits_left)
        return self.state.account_view(body["service"])

    def _set_sender(self, body: dict[str, Any], query: Any) -> Any:
        _fields(body, required={"service": str, "sender": str}, optional={"status": str, "comment": str})
        status = body.get("status", "enable")
        allowed = load().enum("sms.StatusSenderEnum") or []
        if status not in allowed:
            raise ControlError(f"status must be one of {', '.join(allowed)}")
        if not body["sender"] or "/" in body["sender"]:
            raise ControlError("sender must be a non-empty name without '/'")
        self.state.set_sender(body["service"], body["sender"], status, body.get("comment"))
        return self.state.sender_view(body["service"], body["sender"])

    def _set_invalid(self, body: dict[str, Any], query: Any) -> Any:
        _fields(body, required={"receivers": list})
        if not all(isinstance(r, str) for r in body["receivers"]):
            raise ControlError("receivers must be a list of strings")
        self.state.set_invalid_receivers(body["receivers"])
        return {"receivers": sorted(body["receivers"])}

    def _set_failing(self, body: dict[str, Any], query: Any) -> Any:
        _fields(body, required={"receivers": dict})
        receivers = body["receivers"]
        if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in receivers.items()):
            raise ControlError("receivers must map numbers (E.164) to ptt codes")
        self.state.set_failing_receivers(receivers)
        return {"receivers": receivers}

    def _add_blacklist(self, body: dict[str, Any], query: Any) -> Any:
        _fields(body, required={"service": str, "number": str})
        self.state.add_blacklist(body["service"], body["number"])
        return {"ok": True}

    def _add_incoming(self, body: dict[str, Any], query: Any) -> Any:
        _fields(body, required={"service": str, "sender": str, "message": str}, optional={"tag": str})
        return {"id": self.state.add_incoming(body["service"], body["sender"], body["message"], body.get("tag", ""))}

    def _reply(self, body: dict[str, Any], query: Any) -> Any:
        _fields(body, required={"service": str, "sender": str, "message": str}, optional={"tag": str})
        if not body["message"] or len(body["message"]) > 1600:
            raise ControlError("message must be 1 to 1600 characters")
        return self.callbacks.reply(body["service"], body["sender"], body["message"], body.get("tag"))

    def _set_callbacks(self, body: dict[str, Any], query: Any) -> Any:
        _fields(body, optional={"duplicates": int, "reorder": bool})
        if not 0 <= body.get("duplicates", 0) <= 5:
            raise ControlError("duplicates must be within 0..5")
        return self.callbacks.configure(duplicates=body.get("duplicates"), reorder=body.get("reorder"))

    def _create_key(self, body: dict[str, Any], query: Any) -> Any:
        _fields(body, required={"rules": list})
        rules = []
        for rule in body["rules"]:
            if not (isinstance(rule, dict) and set(rule) == {"method", "path"}):
                raise ControlError("a rule is {method, path}")
            if rule["method"] not in METHODS or not isinstance(rule["path"], str) or not rule["path"].startswith("/"):
                raise ControlError(f"a rule's method is one of {', '.join(METHODS)}, its path starts with '/'")
            rules.append(AccessRule(rule["method"], rule["path"]))
        return {"consumer_key": self.auth.add_consumer_key(rules)}


def _fields(
    body: dict[str, Any], required: Mapping[str, type] | None = None, optional: Mapping[str, type] | None = None
) -> None:
    required, optional = required or {}, optional or {}
    unknown = set(body) - set(required) - set(optional)
    if unknown:
        raise ControlError(f"unknown field(s): {', '.join(sorted(unknown))}")
    for name in required:
        if name not in body:
            raise ControlError(f"missing field: {name}")
    for name, kind in {**required, **optional}.items():
        if name not in body:
            continue
        value = body[name]
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if not ok:
            raise ControlError(f"{name} must be of type {kind.__name__}")


class SandboxControlError(RuntimeError):
    """The control API refused a request (the message is its answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class SandboxControl:
    """Python client of the control API; works against a sandbox in another process too.

    ``base_url`` is the sandbox's root or its OVH base URL (``http://127.0.0.1:8080/1.0``).
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected an http:// URL, got {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._timeout = timeout

    def _call(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None) -> Any:
        target = PREFIX + path
        if query:
            target += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        payload = json.dumps(body).encode() if body is not None else b""
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            connection.request(method, target, body=payload, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            data = json.loads(response.read() or b"null")
        finally:
            connection.close()
        if response.status != 200:
            message = data.get("error") if isinstance(data, dict) else data
            raise SandboxControlError(response.status, str(message))
        return data

    # inspection
    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")  # type: ignore[no-any-return]

    def sent(self, receiver: str | None = None, service: str | None = None) -> list[dict[str, Any]]:
        """Every accepted SMS, oldest first (``receiver`` as reported in validReceivers)."""
        return self._call("GET", "/sent", query={"receiver": receiver, "service": service})  # type: ignore[no-any-return]

    def calls(self) -> list[dict[str, Any]]:
        """Every ``POST .../jobs`` call, oldest first, with its outcome."""
        return self._call("GET", "/calls")  # type: ignore[no-any-return]

    def counters(self) -> dict[str, Any]:
        return self._call("GET", "/counters")  # type: ignore[no-any-return]

    # faults
    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/faults")  # type: ignore[no-any-return]

    def set_faults(
        self,
        *,
        latency_ms: float | None = None,
        jitter_ms: float | None = None,
        faults: list[dict[str, Any]] | None = None,
        rate_limit_per_s: float | None = None,
        rate_limit_burst: float | None = None,
        hold_s: float | None = None,
    ) -> dict[str, Any]:
        """Change the given settings only; ``faults`` replaces the list of fault rules
        (each ``{"kind", "probability" | "next", "scope": "jobs"|"all", "retry_after", "receiver"}``);
        ``rate_limit_per_s=0`` turns the rate limit off."""
        settings = {
            "latency_ms": latency_ms,
            "jitter_ms": jitter_ms,
            "faults": faults,
            "rate_limit_per_s": rate_limit_per_s,
            "rate_limit_burst": rate_limit_burst,
            "hold_s": hold_s,
        }
        return self._call("PUT", "/faults", {k: v for k, v in settings.items() if v is not None})  # type: ignore[no-any-return]

    def add_fault(
        self,
        kind: str,
        *,
        probability: float | None = None,
        next: int | None = None,
        scope: str = "jobs",
        retry_after: float = 1.0,
        delay_s: float | None = None,
        delay_max_s: float | None = None,
        receiver: str | None = None,
    ) -> dict[str, Any]:
        """One fault rule (see ``ovh_sandbox.faults``); ``delay_s``/``delay_max_s`` for ``slow``;
        ``receiver``: only jobs calls sending to this number match."""
        rule: dict[str, Any] = {"kind": kind, "scope": scope, "retry_after": retry_after}
        if delay_s is not None:
            rule["delay_s"] = delay_s
        if delay_max_s is not None:
            rule["delay_max_s"] = delay_max_s
        if receiver is not None:
            rule["receiver"] = receiver
        if probability is not None:
            rule["probability"] = probability
        if next is not None:
            rule["next"] = next
        return self._call("POST", "/faults", rule)  # type: ignore[no-any-return]

    def clear_faults(self) -> dict[str, Any]:
        return self._call("DELETE", "/faults")  # type: ignore[no-any-return]

    # accounts and data
    def reset(self, accounts: bool = False) -> None:
        """Forget sent SMS, calls, counters, faults; with ``accounts``, the accounts too."""
        self._call("POST", "/reset", {"accounts": accounts})

    def set_credits(self, service: str, credits: float) -> dict[str, Any]:
        return self._call("PUT", "/credits", {"service": service, "credits": credits})  # type: ignore[no-any-return]

    def add_account(self, service: str, credits: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"service": service}
        if credits is not None:
            body["credits"] = credits
        return self._call("POST", "/accounts", body)  # type: ignore[no-any-return]

    def set_sender(
        self, service: str, sender: str, status: str = "enable", comment: str | None = None
    ) -> dict[str, Any]:
        """Create ``sender`` or move it to ``status``, as OVH's moderator does (``comment``: why)."""
        body = {"service": service, "sender": sender, "status": status}
        if comment is not None:
            body["comment"] = comment
        return self._call("PUT", "/senders", body)  # type: ignore[no-any-return]

    def orders(self) -> list[dict[str, Any]]:
        """Every purchase order of credits, oldest first (``orderId, service, quantity, url, paid``)."""
        return self._call("GET", "/orders")  # type: ignore[no-any-return]

    def pay_order(self, order_id: int) -> dict[str, Any]:
        """Pay a purchase order: its credits reach its account."""
        return self._call("POST", "/orders/pay", {"orderId": order_id})  # type: ignore[no-any-return]

    def set_invalid_receivers(self, receivers: Iterable[str]) -> None:
        """Well-formed numbers to report in invalidReceivers all the same (replaces the list)."""
        self._call("PUT", "/invalid-receivers", {"receivers": list(receivers)})

    def set_failing_receivers(self, receivers: Iterable[str] | Mapping[str, int], ptt: int = 23) -> None:
        """Receivers (E.164) whose SMS fail with ``ptt`` (or the ptt given per number)."""
        mapping = dict(receivers) if isinstance(receivers, Mapping) else {r: ptt for r in receivers}
        self._call("PUT", "/failing-receivers", {"receivers": mapping})

    def add_blacklist(self, service: str, number: str) -> None:
        self._call("POST", "/blacklists", {"service": service, "number": number})

    def add_incoming(self, service: str, sender: str, message: str, tag: str = "") -> int:
        body = {"service": service, "sender": sender, "message": message, "tag": tag}
        return self._call("POST", "/incoming", body)["id"]  # type: ignore[no-any-return]

    def reply(self, service: str, sender: str, message: str, tag: str | None = None) -> dict[str, Any]:
        """``sender`` writes to the account: recorded in ``GET .../incoming``, POSTed to the
        smsResponse cgiUrl; a STOP blacklists the number and calls stopCallBack. ``{"id", "stop"}``."""
        body = {"service": service, "sender": sender, "message": message}
        if tag is not None:
            body["tag"] = tag
        return self._call("POST", "/replies", body)  # type: ignore[no-any-return]

    def set_callbacks(self, *, duplicates: int | None = None, reorder: bool | None = None) -> dict[str, Any]:
        """Send each callback ``1 + duplicates`` times; ``reorder``: an SMS's final receipt first."""
        settings = {"duplicates": duplicates, "reorder": reorder}
        return self._call("PUT", "/callbacks", {k: v for k, v in settings.items() if v is not None})  # type: ignore[no-any-return]

    def callbacks(self) -> list[dict[str, Any]]:
        """Every call made to a callBack, cgiUrl or stopCallBack, oldest first."""
        return self._call("GET", "/callbacks")  # type: ignore[no-any-return]

    def receipts(self) -> list[dict[str, Any]]:
        """Every SMS's receipt now: ``id, service, receiver, deliveryReceipt, ptt, final``."""
        return self._call("GET", "/receipts")  # type: ignore[no-any-return]

    def create_consumer_key(self, rules: Iterable[tuple[str, str] | Mapping[str, str]]) -> str:
        """A consumer key (of the sandbox's application) limited to ``rules`` such as ``("GET", "/sms/*")``."""
        body = [dict(r) if isinstance(r, Mapping) else {"method": r[0], "path": r[1]} for r in rules]
        return self._call("POST", "/consumer-keys", {"rules": body})["consumer_key"]  # type: ignore[no-any-return]

    def revoke_consumer_key(self, consumer_key: str) -> bool:
        return self._call("DELETE", "/consumer-keys/" + quote(consumer_key, safe=""))["revoked"]  # type: ignore[no-any-return]
