"""One request of the OVH surface, from arrival to answer.

Order: route (404/501) -> injected latency -> signature and rights (400/403) -> per-key rate
limit (429) -> injected fault -> parameters (400) -> handler. A ``POST .../jobs`` is recorded
as a call as soon as its route is known, and its outcome (status, "reset" or "timeout") when
it ends, whatever happened in between.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from ovh_sandbox import admin
from ovh_sandbox.api import ROUTES, Call, Route, Router
from ovh_sandbox.auth import Authenticator
from ovh_sandbox.faults import Faults
from ovh_sandbox.ovh_errors import OvhError
from ovh_sandbox.schema import load
from ovh_sandbox.state import SandboxState
from ovh_sandbox.validation import check_params

log = logging.getLogger(__name__)

API_PREFIX = "/1.0"
#: Every route the sandbox serves: the SMS API's, then the account administration's.
SERVED: tuple[Route, ...] = (*ROUTES, *admin.ROUTES)


@dataclass
class Request:
    method: str
    target: str  # path and query string, as received
    headers: Mapping[str, str]
    body: bytes
    host: str  # the Host header: the client signed http://{host}{target}


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    action: str | None = None  # "reset": close with RST, no answer; "hold": never answer
    html: str | None = None  # an HTML body instead of JSON (a proxy's error page)


class Dispatcher:
    def __init__(
        self,
        state: SandboxState,
        faults: Faults,
        auth: Authenticator,
        stop: threading.Event,
        control: Callable[[Request], Reply],
        clock: Callable[[], float],
    ) -> None:
        self.state = state
        self.faults = faults
        self.auth = auth
        self.stop = stop
        self.control = control
        self.clock = clock
        self.router = Router(SERVED, load())
        self._query_ids = itertools.count(1)
        self._query_prefix = f"EU.sandbox-{state.seed}."

    def handle(self, request: Request) -> Reply:
        path = request.target.partition("?")[0]
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            reply = self.control(request)
        elif path.startswith(API_PREFIX + "/"):
            reply = self._ovh(request, path[len(API_PREFIX) :])
        else:
            reply = Reply(404, OvhError(404, "Got an invalid (or empty) URL").body())
        reply.headers["X-Ovh-QueryId"] = self._query_prefix + format(next(self._query_ids), "08x")
        return reply

    def _ovh(self, request: Request, api_path: str) -> Reply:
        self.state.count_request()
        if request.method == "GET" and api_path == "/auth/time":
            self._sleep(self.faults.latency_s())
            decision = self.faults.pick(False)  # faults of scope "all" cover the clock too
            if decision is not None and decision.kind == "slow":
                self._sleep(decision.delay_s)
                decision = None
            if decision is None:
                return Reply(200, int(self.clock()))
            if decision.kind == "reset":
                return Reply(0, action="reset")
            if decision.kind == "timeout_after_accept":
                return Reply(200, int(self.clock()), action="hold")
            status = int(decision.kind.removeprefix("proxy_"))
            return Reply(status, OvhError(status, f"Injected fault: HTTP {status}").body())
        try:
            route, path_values = self.router.match(request.method, api_path)
        except OvhError as error:
            return Reply(error.status, error.body(), error.headers)
        body_text, body, body_error = _decode(request.body)
        call_id = None
        if route.is_jobs_post:
            receivers = body.get("receivers") if isinstance(body, dict) else None
            call_id = self.state.begin_call(
                request.headers.get("X-Ovh-Consumer"),
                path_values.get("login"),
                len(receivers) if isinstance(receivers, list) else 0,
            )
        call = Call(self.state, path_values, {}, call_id)
        outcome: int | str
        try:
            reply = self._run(request, api_path, route, call, body_text, body, body_error)
            outcome = {"reset": "reset", "hold": "timeout"}.get(reply.action or "", reply.status)
        except Exception:
            log.exception("sandbox: %s %s failed", request.method, request.target)
            reply = Reply(500, OvhError(500, "Internal server error (sandbox bug)").body())
            outcome = 500
        if call_id is not None:
            self.state.end_call(call_id, outcome, call.credits_removed)
        return reply

    def _run(
        self,
        request: Request,
        api_path: str,
        route: Any,
        call: Call,
        body_text: str,
        body: Any,
        body_error: str | None,
    ) -> Reply:
        hold = False
        try:
            self._sleep(self.faults.latency_s())
            if route.auth:
                url = f"http://{request.host}{request.target}"
                now = self.clock()
                key = self.auth.check(request.method, url, api_path, body_text, request.headers, now)
                retry_after = self.faults.take_token(key, now)
                if retry_after is not None:
                    raise OvhError(
                        429, "Too many requests for this consumer key", headers={"Retry-After": str(retry_after)}
                    )
            receivers = body.get("receivers") if route.is_jobs_post and isinstance(body, dict) else None
            decision = self.faults.pick(route.is_jobs_post, receivers)
            if decision is not None and decision.kind == "slow":
                # OVH takes its time, then carries the call out whether the client waited or not.
                call.state.note_delay(call.call_id, decision.delay_s)
                self._sleep(decision.delay_s)
                decision = None
            if decision is not None:
                if decision.kind == "reset":
                    return Reply(0, action="reset")
                if decision.kind == "timeout_after_accept":
                    hold = True
                elif decision.kind.startswith("proxy_"):
                    status = int(decision.kind.removeprefix("proxy_"))
                    headers = {"Retry-After": str(_whole(decision.retry_after))} if status == 429 else {}
                    page = f"<html><body><h1>{status}</h1>The service is unavailable.</body></html>"
                    return Reply(status, headers=headers, html=page)
                elif decision.kind == "429":
                    raise OvhError(429, "Too many requests", headers={"Retry-After": str(_whole(decision.retry_after))})
                else:
                    raise OvhError(int(decision.kind), f"Injected fault: HTTP {decision.kind}")
            if body_error is not None:
                raise OvhError(400, body_error)
            query = parse_qs(request.target.partition("?")[2], keep_blank_values=True)
            call.params = check_params(route.params, query, body, self.router.schema)
            reply = Reply(200, route.handler(call))
        except OvhError as error:
            reply = Reply(error.status, error.body(), dict(error.headers))
        if hold:
            reply.action = "hold"
        return reply

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.stop.wait(seconds)


def _decode(raw: bytes) -> tuple[str, Any, str | None]:
    """(body text as signed, parsed JSON or None, error message or None)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "", None, "Invalid body: not UTF-8"
    if not text:
        return text, None, None
    try:
        return text, json.loads(text), None
    except ValueError:
        return text, None, "Invalid JSON body"


def _whole(seconds: float) -> int:
    return max(0, math.ceil(seconds))
