"""The dispatch stage: claim a due batch, make the jobs call, settle and publish.

Dispatchers are threads in every worker process, each looping: claim the most urgent due
batch (highest lane first), call OVH through the retry layer, map OVH's ``SmsSendingReport``
back onto each request, then settle atomically (results published exactly once). They sleep on
a Redis list the accept stage pushes to, so a ``high`` request is dispatched as soon as it is
staged.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import phonenumbers
import redis

from contracts.models import CreditUsage
from contracts.wire import LANES

from ..errors import AmbiguousError, GatewayError, PermanentError, RetryableError
from ..ops.telemetry import Telemetry
from ..ovhcloud.gateway import OvhGateway
from ..ovhcloud.rate_limit import RateLimiter
from ..ovhcloud.retries import call_with_retries
from ..settings import Settings
from .buffers import BatchBuffer, Claim, Entry, Event, Settlement, now_ms

log = logging.getLogger(__name__)

#: Longest a dispatcher sleeps before looking at the buffers again (seconds).
MAX_IDLE_S = 0.5

#: How often a dispatcher looks for attempts left behind by a stopped worker (seconds).
RECOVERY_EVERY_S = 30.0

#: Longest a claimed batch waits for its first rate-limit slot before it is given back (seconds).
ACQUIRE_TIMEOUT_S = 30.0


def stale_after_ms(settings: Settings) -> int:
    """Age past which an attempt cannot still be in the hands of a live worker.

    Per try: a rate-limit slot wait, connect and read timeouts and tenacity's wait, with a
    minute to spare.
    """
    per_try = ACQUIRE_TIMEOUT_S + settings.ovh_connect_timeout_s + settings.ovh_read_timeout_s
    return int(1000 * (settings.retry_attempts * (per_try + settings.retry_max_wait_s) + 60))


def liveness_interval_s(settings: Settings) -> float:
    """Longest a healthy dispatcher goes between two liveness ticks (seconds).

    It ticks every loop and every try of a call; between two ticks lie at most a rate-limit
    slot wait, one try (connect and read timeouts) and tenacity's wait, plus half a minute.
    """
    if settings.dispatch_liveness_s is not None:
        return settings.dispatch_liveness_s
    try_s = settings.ovh_connect_timeout_s + settings.ovh_read_timeout_s
    return ACQUIRE_TIMEOUT_S + try_s + settings.retry_max_wait_s + 30.0


_E164 = re.compile(r"^\+[1-9][0-9]{5,14}$")


def _e164(number: str) -> str:
    """OVH reports receivers in E.164 already (as sent); other spellings are normalized."""
    if _E164.match(number):
        return number
    try:
        return phonenumbers.format_number(phonenumbers.parse(number, None), phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        return number


def _error(exc: GatewayError) -> dict[str, Any]:
    code = "outcome_unknown" if isinstance(exc, AmbiguousError) else "ovh_error"
    error = {"code": code, "message": exc.message, "ovh_class": exc.ovh_class, "ovh_query_id": exc.query_id}
    return {k: v for k, v in error.items() if v is not None}


def _by_request(entries: list[Entry]) -> dict[str, list[Entry]]:
    """A call's entries grouped by request, in the order requests first appear."""
    grouped: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        grouped[entry.request_id].append(entry)
    return grouped


def settle_failure(claim: Claim, exc: GatewayError) -> list[Settlement]:
    """Every receiver of the call failed (OVH refused) or is unknown (maybe sent).

    A failed call's reserved credits are all refunded. An ambiguous one's are kept as spent:
    OVH may have carried the call out and debited them, and refunding credits that may be
    spent could let the quota overspend (a later reconciliation may give them back).
    """
    status = "unknown" if isinstance(exc, AmbiguousError) else "failed"
    by_request = _by_request(claim.entries)
    settlements = []
    for request_id, entries in by_request.items():
        reserved = sum(e.credits for e in entries)
        settlements.append(
            Settlement(
                request_id=request_id,
                n_in_call=len(entries),
                n_failed=len(entries) if status == "failed" else 0,
                n_unknown=len(entries) if status == "unknown" else 0,
                outcomes=tuple({"receiver": e.receiver, "status": status, "reason": exc.message} for e in entries),
                error=_error(exc),
                reserved=reserved,
                unconfirmed=reserved if status == "unknown" else 0.0,
            )
        )
    return settlements


def settle_report(claim: Claim, report: dict[str, Any]) -> list[Settlement]:
    """Map OVH's ``SmsSendingReport`` back onto each request of the call.

    ``totalCreditsRemoved`` is apportioned to requests by their receivers' estimated credits;
    the last request takes the remainder, so the shares add up to OVH's figure exactly. Each
    request's reserved credits are settled: its share is spent, credits of receivers missing
    from the report (outcome unknown) are kept as spent, the rest (invalid receivers, an
    estimate above OVH's figure) is refunded.
    """
    valid = [_e164(r) for r in report.get("validReceivers") or []]
    invalid = {_e164(r) for r in report.get("invalidReceivers") or []}
    ids = report.get("ids") or []
    id_of = dict(zip(valid, ids, strict=False)) if len(ids) == len(valid) else {}
    valid_set = set(valid)
    total = float(report.get("totalCreditsRemoved") or 0.0)
    weight = sum(e.credits for e in claim.entries if e.receiver in valid_set) or 1.0

    by_request = _by_request(claim.entries)
    settlements = []
    shared = 0.0
    with_sent = [rid for rid, entries in by_request.items() if any(e.receiver in valid_set for e in entries)]
    for request_id, entries in by_request.items():
        outcomes = []
        counts = {"sent": 0, "unknown": 0}
        unconfirmed = 0.0
        for entry in entries:
            if entry.receiver in valid_set:
                outcomes.append({"receiver": entry.receiver, "status": "sent", "ovh_id": id_of.get(entry.receiver)})
                counts["sent"] += 1
            elif entry.receiver in invalid:
                outcomes.append({"receiver": entry.receiver, "status": "invalid", "reason": "refused by OVH"})
            else:
                outcomes.append({"receiver": entry.receiver, "status": "unknown", "reason": "not in OVH's report"})
                counts["unknown"] += 1
                unconfirmed += entry.credits
        if with_sent and request_id == with_sent[-1]:
            share = total - shared
        else:
            share = total * sum(e.credits for e in entries if e.receiver in valid_set) / weight
            shared += share
        settlements.append(
            Settlement(
                request_id=request_id,
                n_in_call=len(entries),
                n_sent=counts["sent"],
                n_unknown=counts["unknown"],
                credits=share if counts["sent"] else 0.0,
                outcomes=tuple({k: v for k, v in o.items() if v is not None} for o in outcomes),
                reserved=sum(e.credits for e in entries),
                unconfirmed=unconfirmed,
            )
        )
    return settlements


def credit_events(claim: Claim, settlements: list[Settlement], default_queue: str) -> list[Event]:
    """One ``CreditUsage`` per results queue among the call's requests, with that queue's share.

    ``credits_reserved`` = ``credits_used`` (OVH's) + ``credits_unconfirmed`` (outcome unknown,
    kept as spent) + ``credits_refunded``, unless OVH removed more than was estimated (then
    nothing is refunded). The settle step adds the user's ``quota_left``.
    """
    by_queue: dict[str, list[Settlement]] = defaultdict(list)
    for settlement in settlements:
        by_queue[claim.reply_tos.get(settlement.request_id) or default_queue].append(settlement)
    events = []
    timestamp = now_ms()
    for queue, group in by_queue.items():
        used = sum(s.credits for s in group)
        held = sum(s.reserved for s in group)
        unconfirmed = sum(s.unconfirmed for s in group)
        usage = CreditUsage(
            call_id=claim.call_id,
            service_name=claim.meta["service"],
            user=claim.meta.get("login"),
            lane=claim.lane,
            request_ids=[s.request_id for s in group],
            receivers=sum(s.n_in_call for s in group),
            credits_reserved=held,
            credits_used=used,
            credits_refunded=max(held - used - unconfirmed, 0.0),
            credits_unconfirmed=unconfirmed,
            at=time.time(),
        )
        events.append(Event(queue, uuid.uuid4().hex, usage.model_dump_json(exclude_none=True), timestamp))
    return events


def tracking_records(claim: Claim, settlements: list[Settlement], default_queue: str) -> list[dict[str, Any]]:
    """One record per SMS OVH accepted with an id: what a delivery report is mapped back with."""
    sent_at = time.time()
    return [
        {
            "id": outcome["ovh_id"],
            "request_id": settlement.request_id,
            "receiver": outcome["receiver"],
            "reply_to": claim.reply_tos.get(settlement.request_id) or default_queue,
            "tag": claim.meta["body"].get("tag"),
            "service": claim.meta["service"],
            "login": claim.meta.get("login"),
            "call_id": claim.call_id,
            "sent_at": sent_at,
        }
        for settlement in settlements
        for outcome in settlement.outcomes
        if outcome.get("status") == "sent" and outcome.get("ovh_id") is not None
    ]


class Dispatcher:
    """Claims due batches and sends them; ``run`` is the body of a dispatcher thread."""

    def __init__(
        self,
        settings: Settings,
        buffer: BatchBuffer,
        gateway: OvhGateway,
        limiter: RateLimiter,
        *,
        worker_id: str,
        lanes: list[str] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.buffer = buffer
        self.gateway = gateway
        self.limiter = limiter
        self.worker_id = worker_id
        # The lanes this dispatcher serves, highest priority first.
        served = lanes or settings.lanes
        self.lanes = [(lane, settings.linger_ms[lane]) for lane in LANES if lane in served]
        self.calls = 0
        self.telemetry = telemetry or Telemetry()

    def run_once(self) -> bool | int:
        """Dispatch one due batch; else return the next due time (ms, or -1 if none)."""
        claim = self.buffer.claim(self.lanes, uuid.uuid4().hex, self.worker_id)
        if isinstance(claim, int):
            return claim
        self.dispatch(claim)
        return True

    def dispatch(self, claim: Claim) -> None:
        if not self.limiter.acquire(claim.lane, timeout_s=ACQUIRE_TIMEOUT_S):
            # Nothing left: the receivers go back to their buffer, due at once.
            self.buffer.requeue(claim.call_id)
            return
        self.buffer.mark_called(claim.call_id)
        started = time.monotonic()
        try:
            report = call_with_retries(
                self._attempts(claim),
                attempts=self.settings.retry_attempts,
                max_wait_s=self.settings.retry_max_wait_s,
            )
        except GatewayError as exc:
            log.warning("jobs call %s (%d receivers) did not succeed: %s", claim.call_id, len(claim.entries), exc)
            settlements = settle_failure(claim, exc)
        except Exception:
            # A fault of ours, not OVH's: whether the call left is unknown, so it is not resent.
            log.exception("jobs call %s failed unexpectedly", claim.call_id)
            settlements = settle_failure(claim, AmbiguousError("internal error during the jobs call"))
        else:
            settlements = settle_report(claim, report)
        self.calls += 1
        self.telemetry.jobs_call(claim.call_id, claim.lane, len(claim.entries), settlements, time.monotonic() - started)
        self._settle(claim, settlements)

    def _settle(self, claim: Claim, settlements: list[Settlement]) -> None:
        """Publish the call's outcomes and its CreditUsage events in one atomic step."""
        events = credit_events(claim, settlements, self.settings.results_queue)
        # Message ids name the request and the time, as stage.lua's do.
        at = now_ms()
        message_ids = [f"result:{s.request_id}:{at}" for s in settlements]
        published = self.buffer.settle(
            claim.call_id,
            settlements,
            events,
            message_ids,
            quota=(claim.meta["service"], claim.meta.get("login")),
            tracking=tracking_records(claim, settlements, self.settings.results_queue),
            tracking_ttl_s=self.settings.delivery_tracking_ttl_s,
        )
        self.telemetry.results(published or ())

    def _attempts(self, claim: Claim) -> Callable[[], dict[str, Any]]:
        """One try of the jobs call; every try after the first takes its own rate-limit slot."""
        meta = claim.meta
        body = {**meta["body"], "receivers": [entry.receiver for entry in claim.entries]}
        tries = 0

        def attempt() -> dict[str, Any]:
            nonlocal tries
            tries += 1
            self.telemetry.tick(threading.current_thread().name)
            if tries > 1 and not self.limiter.acquire(claim.lane, timeout_s=ACQUIRE_TIMEOUT_S):
                raise RetryableError("no rate-limit slot for the retry in time")
            try:
                with self.telemetry.jobs_try(claim.lane, last=tries >= self.settings.retry_attempts):
                    report = self.gateway.send_job(meta["service"], meta.get("login"), body)
            except RetryableError as exc:
                if exc.status == 429:
                    self.limiter.on_rate_limited(exc.retry_after_s)
                raise
            except PermanentError:
                self.limiter.on_success()  # OVH answered, and not with 429
                raise
            self.limiter.on_success()
            return report

        return attempt

    def recover(self, older_than_ms: int) -> None:
        """Finish attempts a stopped worker left: give back uncalled ones, settle called ones as unknown."""
        for call_id in self.buffer.stale_attempts(older_than_ms):
            if self.buffer.requeue(call_id) >= 0:
                log.warning("attempt %s never called OVH: its receivers are staged again", call_id)
                continue
            attempt = self.buffer.attempt(call_id)
            if not attempt:
                continue
            entries = [Entry.decode(line) for line in attempt["entries"].split("\n")]
            claim = Claim(
                call_id=call_id,
                lane=attempt["lane"],
                meta=json.loads(attempt["meta"]),
                reply_tos=self.buffer.reply_tos({entry.request_id for entry in entries}),
                entries=entries,
            )
            exc = AmbiguousError("the worker stopped during the jobs call; OVH may have accepted it")
            self._settle(claim, settle_failure(claim, exc))
            log.warning("attempt %s was left in flight by a stopped worker: settled as unknown", call_id)

    def run(self, stop: threading.Event) -> None:
        next_recovery = time.monotonic() + RECOVERY_EVERY_S
        stale_ms = stale_after_ms(self.settings)
        loop = threading.current_thread().name
        self.telemetry.liveness.register(loop, liveness_interval_s(self.settings))
        while not stop.is_set():
            self.telemetry.tick(loop)
            try:
                outcome = self.run_once()
                if outcome is True:
                    continue
                wait = MAX_IDLE_S if outcome < 0 else min(max((outcome - now_ms()) / 1000, 0.001), MAX_IDLE_S)
                self.buffer.wait_for_work(wait)
                if time.monotonic() >= next_recovery:
                    next_recovery = time.monotonic() + RECOVERY_EVERY_S
                    self.recover(stale_ms)
            except redis.ConnectionError as exc:
                log.error("dispatcher lost Redis: %s; retrying in 1 s", exc)
                stop.wait(1.0)
            except Exception:
                log.exception("dispatcher error; going on in 1 s")
                stop.wait(1.0)
        self.telemetry.liveness.unregister(loop)
