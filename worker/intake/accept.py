"""The accept stage: from a queued payload to receivers staged in batch buffers.

Parse and validate each request; normalize receivers (invalid ones set aside); render mail
merge; estimate credits (parts times each destination's rate, from memory: no OVH call here);
check the account can pay (best effort, cached); then dedupe, reserve the user's quota and
stage in one atomic Redis step per request. A request that cannot be sent gets its one
``rejected`` result here.

Rejections are final only for the request's own faults (``FINAL_REJECTIONS``); one refused
for a cause that is not its own (``TRANSIENT_REJECTIONS``: its user's quota, the account's
credits, a fault of ours) does not burn its id: the same id sent again in a new message is
taken as a new try. A request whose destination's credit rate OVH has not told yet is not
refused: its message is retried (``dramatiq.Retry``) while the rate is read in the background,
for up to ``rate_wait_s``, and only then refused with ``rate_unknown`` (transient).

Nothing is lost and nothing stalls: each request of a pack is prepared on its own (an unexpected
error gives that request a ``rejected`` result with code ``internal_error``, its neighbours go
on); staging is retried through a Redis outage of minutes (it is idempotent); an item whose
request id cannot be read is dead-lettered on its own, and a payload of which nothing can be
read raises ``UnreadablePayload`` (the actor dead-letters the message).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq
import redis
from pydantic import TypeAdapter, ValidationError

from contracts.models import (
    MAX_METADATA_BYTES,
    REQUEST_ID_PATTERN,
    SERVICE_NAME_PATTERN,
    QueueName,
    ReceiverOutcome,
    SendRequest,
    SendResult,
    describe_validation_error,
)
from contracts.wire import CONTRACT_VERSION, DEFAULT_LANE, lane_queue, request_message
from worker import phones
from worker.accounting import credits
from worker.accounting.quotas import EPSILON as QUOTA_EPSILON
from worker.accounting.quotas import QuotaStore
from worker.batching.buffers import Batch, Buffers, Entry, Fragment, QuotaRequest, Skeleton, Staging, encode_meta
from worker.errors import Rejection, UnreadablePayload
from worker.intake import mailmerge
from worker.intake.policy import Policy
from worker.ops.telemetry import Telemetry
from worker.ovhcloud.jobs import JobBody
from worker.quiet_hours import QuietHours
from worker.retries import REDIS_OUTAGE, until_redis_answers
from worker.settings import Settings

log = logging.getLogger(__name__)

#: Delays of a message whose requests wait for a destination's rate (ms): about as long as it
#: has waited, within these bounds.
RATE_RETRY_MIN_MS, RATE_RETRY_MAX_MS = 1_000, 30_000

_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
_SERVICE_NAME = re.compile(SERVICE_NAME_PATTERN)
_QUEUE_NAME: TypeAdapter[str] = TypeAdapter(QueueName)


#: Rejections for the request's own faults: its id is spent (a repeat changes nothing).
FINAL_REJECTIONS = frozenset(
    {"invalid_request", "no_valid_receivers", "message_too_long", "sender_not_allowed", "blacklisted"}
)
#: Rejections for a cause that is not the request's own: the same id may be sent again.
TRANSIENT_REJECTIONS = frozenset({"quota_exceeded", "account_credits_exhausted", "rate_unknown", "internal_error"})


@dataclass(frozen=True, slots=True)
class Delivery:
    """The queue message a payload came in: its dramatiq id (a redelivery of it is not a resend)
    and when it was first queued (unix s: how long its requests have waited for a rate)."""

    message_id: str
    first_at_s: float

    @classmethod
    def now(cls) -> Delivery:
        """A payload handed over directly (no queue message): a delivery of its own."""
        return cls(uuid.uuid4().hex, time.time())


class _WaitForRate(Exception):
    """A destination's credit rate is not known yet: the request waits for it."""


def _parsed(payload: Any) -> Any:
    """A payload given as JSON text, parsed; anything else as it is."""
    if isinstance(payload, str | bytes):
        try:
            return json.loads(payload)
        except ValueError as exc:
            raise UnreadablePayload(f"payload is not JSON: {exc}") from None
    return payload


def _items(payload: Any) -> list[Any]:
    """The requests a message carries: one object, or a pack (a non-empty JSON array of them)."""
    payload = _parsed(payload)
    if isinstance(payload, list):
        if not payload:
            raise UnreadablePayload("payload is an empty pack")
        return payload
    return [payload]


def read_payload(payload: Any) -> tuple[str, dict[str, Any]]:
    """``(request_id, data)`` from a message argument (a JSON object, or its text)."""
    payload = _parsed(payload)
    if not isinstance(payload, dict):
        raise UnreadablePayload(f"payload is a JSON {type(payload).__name__}, not an object")
    request_id = payload.get("request_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise UnreadablePayload("payload has no readable request_id")
    return request_id, payload


def ovh_body(request: SendRequest, text: str, default_sender: str | None) -> JobBody:
    """The jobs call body for ``text`` (receivers are added at dispatch), in OVH's names."""
    body: JobBody = {
        "message": text,
        "priority": request.priority.value,
        "validityPeriod": request.validity_period,
        "noStopClause": request.no_stop_clause,
        "senderForResponse": request.sender_for_response,
    }
    sender = request.sender or default_sender
    if sender is not None:
        body["sender"] = sender
    if request.differed_period:
        body["differedPeriod"] = request.differed_period
    if request.tag is not None:
        body["tag"] = request.tag
    return body


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A request ready to stage, with what accounting needs after the stage step."""

    index: int
    request: SendRequest
    staging: Staging
    service: str
    needed: float
    account_checked: bool


class AcceptStage:
    """``rates`` prices each destination; ``balance`` (optional) backs the account check;
    ``quotas`` (optional) tells which users OVH holds a quota for (the account does not pay);
    ``dead_letter(queue, message)`` parks an unreadable item of a pack; ``policy`` (optional)
    refuses senders OVH does not allow and commercial sends to numbers that opted out;
    ``quiet`` (optional) holds commercial sends accepted in the quiet hours until they end
    (their result says until when: ``deferred_until``), never a non-commercial one."""

    def __init__(
        self,
        settings: Settings,
        buffers: Buffers,
        *,
        rates: credits.RateTable,
        balance: credits.AccountBalance | None = None,
        quotas: QuotaStore | None = None,
        dead_letter: Callable[[str, dramatiq.Message[Any]], None] | None = None,
        telemetry: Telemetry | None = None,
        policy: Policy | None = None,
        quiet: QuietHours | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.buffers = buffers
        self.rates = rates
        self.balance = balance
        self.quotas = quotas
        self.dead_letter = dead_letter
        self.telemetry = telemetry or Telemetry()
        self.policy = policy
        self.quiet = quiet  # the quiet hours of commercial sends (worker.quiet_hours); None: never held
        self.clock = clock  # wall clock (unix s) the quiet hours are read with: a seam for tests

    def __call__(self, payload: Any, *, lane: str | None = None, delivery: Delivery | None = None) -> list[str]:
        """Accept one request or a pack of them (a JSON array); one outcome per readable request.

        Outcomes are ``staged``, ``duplicate`` or ``rejected``, in the order of the readable
        requests. The requests of a pack are staged in one round trip. Raises ``dramatiq.Retry``
        after staging the others when a request waits for a destination's rate.
        """
        lane = lane or DEFAULT_LANE
        delivery = delivery or Delivery.now()
        items = _items(payload)
        if self.policy is not None:  # the blacklist is re-read (if it moved) once per message
            self.policy.new_pack()
        readable: list[tuple[str, dict[str, Any]]] = []
        unreadable: list[tuple[Any, UnreadablePayload]] = []
        for item in items:
            try:
                readable.append(read_payload(item))
            except UnreadablePayload as exc:
                if len(items) == 1:
                    raise
                unreadable.append((item, exc))
        if not readable:  # the whole message goes to the dead-letter queue, once
            raise UnreadablePayload("no request of the pack has a readable request_id")
        for item, reason in unreadable:
            self._dead_letter(item, reason, lane)
        outcomes: dict[int, str] = {}
        prepared: list[_Prepared] = []
        held: dict[str, float] = defaultdict(float)  # credits this pack already asked of each account
        waiting: dict[int, str] = {}  # request index -> which rate it waits for
        for n, (request_id, data) in enumerate(readable):
            try:
                ready = self._prepare_through_outage(n, request_id, data, held)
            except Rejection as rejection:
                outcomes[n] = self._reject(request_id, data, rejection, lane, delivery)
                continue
            except _WaitForRate as exc:
                waiting[n] = str(exc)
                continue
            except REDIS_OUTAGE:
                raise
            except Exception as exc:  # a fault of ours on this one request: its neighbours go on
                log.exception("request %s could not be prepared", request_id, extra={"request_id": request_id})
                failure = Rejection("internal_error", f"the worker failed on this request ({type(exc).__name__})")
                outcomes[n] = self._reject(request_id, data, failure, lane, delivery)
                continue
            if ready.account_checked:
                held[ready.service] += ready.needed
            prepared.append(ready)
        for ready, reply in zip(prepared, self._stage(prepared, delivery), strict=True):
            outcomes[ready.index] = self._after_stage(ready, reply, readable[ready.index][1], lane, delivery)
        if waiting:
            waited_s = time.time() - delivery.first_at_s
            if waited_s < self.settings.rate_wait_s:
                self.telemetry.requests_accepted(lane, outcomes.values())
                # The whole message comes back (the others are then repeats: nothing changes);
                # the rate is being read at once meanwhile (RateTable asked the refresher).
                delay_ms = int(min(max(waited_s * 1000, RATE_RETRY_MIN_MS), RATE_RETRY_MAX_MS))
                raise dramatiq.Retry(f"{len(waiting)} request(s) wait for a destination's rate", delay=delay_ms)
            for n, why in waiting.items():
                request_id, data = readable[n]
                unknown = Rejection("rate_unknown", f"receivers: {why}; send it again later", field="receivers")
                outcomes[n] = self._reject(request_id, data, unknown, lane, delivery)
        self.telemetry.requests_accepted(lane, outcomes.values())
        return [outcomes[n] for n in range(len(readable))]

    def _prepare_through_outage(
        self, n: int, request_id: str, data: dict[str, Any], held: dict[str, float]
    ) -> _Prepared:
        """``_prepare``, waiting out a Redis outage: it is nobody's fault in the pack, so after
        ``redis_outage_s`` the pack fails (dramatiq retries it) rather than a request be rejected.
        Tried once before any retry loop is built: this runs for every request."""
        try:
            return self._prepare(n, request_id, data, held)
        except REDIS_OUTAGE:
            return until_redis_answers(
                functools.partial(self._prepare, n, request_id, data, held),
                outage_s=self.settings.redis_outage_s,
                what="prepare a request",
            )

    # -- staging ----------------------------------------------------------------------------------

    def _stage(self, prepared: list[_Prepared], delivery: Delivery) -> list[str]:
        """Stage the pack in one round trip, through a Redis outage; one by one if the pack fails."""
        if not prepared:
            return []
        stagings = [p.staging for p in prepared]

        def stage(batch: list[Staging]) -> list[str]:
            return until_redis_answers(
                lambda: self.buffers.stage_many(batch, linger_ms=self.settings.linger_ms, delivery=delivery.message_id),
                outage_s=self.settings.redis_outage_s,
                what="stage requests",
            )

        try:
            return stage(stagings)
        except redis.ResponseError:
            log.exception("staging a pack of %d failed; staging its requests one by one", len(stagings))
        replies = []
        for staging in stagings:
            try:
                replies += stage([staging])
            except redis.ResponseError:
                log.exception("request %s could not be staged", staging.request_id)
                replies.append("error")
        return replies

    def _after_stage(self, ready: _Prepared, reply: str, data: dict[str, Any], lane: str, delivery: Delivery) -> str:
        request = ready.request
        if reply == "error":
            failure = Rejection("internal_error", "the worker could not stage this request")
            return self._reject(request.request_id, data, failure, lane, delivery)
        if reply.startswith("quota:"):
            left = float(reply.split(":", 1)[1])
            message = (
                f"quota of user {request.user} exceeded: this request needs {ready.needed:g} credits "
                f"and the quota has {left:g} left"
            )
            rejection = Rejection(
                "quota_exceeded", message, field="user", credits_needed=ready.needed, credits_left=left,
                outcomes=[ReceiverOutcome.model_validate(o) for o in ready.staging.invalid_outcomes],
            )  # fmt: skip
            return self._reject(request.request_id, data, rejection, lane, delivery)
        if reply == "staged" and ready.account_checked and self.balance is not None:
            self.balance.debit(ready.service, ready.needed)
        return reply

    def _dead_letter(self, item: Any, exc: UnreadablePayload, lane: str) -> None:
        message = request_message(lane, item)
        log.error("dead-lettering one request of a pack on %s: %s", lane_queue(lane), exc)
        if self.dead_letter is not None:
            self.dead_letter(lane_queue(lane), message)
        self.telemetry.dead_letter(lane_queue(lane))

    # -- preparing one request --------------------------------------------------------------------

    def _hold(self, request: SendRequest) -> tuple[int, float | None]:
        """How a commercial request accepted in the quiet hours is held: ``(not before, in Redis'
        time base (unix ms), until when by ``clock`` (unix s))``, or ``(0, None)``. Its send
        time, differed period included, must be allowed."""
        if self.quiet is None or request.no_stop_clause:
            return 0, None
        differed_s = (request.differed_period or 0) * 60
        now = self.clock()
        held = self.quiet.held_until(datetime.fromtimestamp(now + differed_s, UTC), commercial=True)
        if held is None:
            return 0, None
        until = held.timestamp() - differed_s
        return int((time.time() + until - now) * 1000), until

    def _prepare(self, index: int, request_id: str, data: dict[str, Any], held: dict[str, float]) -> _Prepared:
        request = self._validate(data)
        hold_ms, deferred_until = self._hold(request)
        batches, invalid = self._batches(request, hold_ms)
        service = batches[0].meta.value.service
        needed = sum(entry.credits for batch in batches for entry in batch.entries)
        checked = self._check_account(request, service, needed, already=held[service])
        skeleton: Skeleton = {
            "kind": "send_result",
            "version": CONTRACT_VERSION,
            "request_id": request_id,
            "service_name": service,
            "accepted_at": time.time(),
        }
        if deferred_until is not None:
            skeleton["deferred_until"] = deferred_until
        if request.user is not None:
            skeleton["user"] = request.user
        if request.tag is not None:
            skeleton["tag"] = request.tag
        if request.metadata is not None:
            skeleton["metadata"] = request.metadata
        staging = Staging(
            request_id=request_id,
            skeleton=skeleton,
            reply_to=request.reply_to,
            invalid_outcomes=[_fragment(o) for o in invalid],
            batches=batches,
            quota=self._quota_request(request, service),
        )
        return _Prepared(index, request, staging, service, needed, checked)

    def _quota_request(self, request: SendRequest, service: str) -> QuotaRequest | None:
        if request.user is None:
            return None
        # The alert SMS's request id is derived from the crossing; it must be a valid id.
        alert_sms = self.settings.quota_alert_sms and bool(_REQUEST_ID.match(f"quota-alert/{service}/{request.user}/0"))
        return QuotaRequest(
            service=service,
            login=request.user,
            alert_queue=self.settings.quota_alerts_queue,
            alert_sms=alert_sms,
            alert_sms_template=self.settings.quota_alert_message,
        )

    def _check_account(self, request: SendRequest, service: str, needed: float, *, already: float = 0.0) -> bool:
        """Refuse a request the account's (cached) creditsLeft cannot pay; True if checked.

        Best effort only: the figure is refreshed every ``account_credits_refresh_s`` and other
        senders share the account, so OVH remains the authority (it refuses what it cannot
        charge). Skipped for a user whose quota OVH holds (OVH pays it from that quota), and
        when creditsLeft is unknown (OVH did not answer): never a refusal by guesswork.
        """
        if not self.settings.account_credits_check or self.balance is None:
            return False
        if request.user is not None and self.quotas is not None and self.quotas.ovh_holds_quota(service, request.user):
            return False
        left = self.balance.credits_left(service)
        if left is None:
            return False
        left -= already
        if needed > left + QUOTA_EPSILON:
            raise Rejection(
                "account_credits_exhausted",
                f"the SMS account {service} cannot pay: this request needs {needed:g} credits "
                f"and the account has {max(left, 0.0):g} left",
                credits_needed=needed,
                credits_left=max(left, 0.0),
            )
        return True

    def _validate(self, data: dict[str, Any]) -> SendRequest:
        try:
            return SendRequest.model_validate(data)
        except ValidationError as exc:
            field, message = describe_validation_error(exc)
            raise Rejection("invalid_request", message, field=field) from None

    def _batches(self, request: SendRequest, hold_ms: int = 0) -> tuple[list[Batch], list[ReceiverOutcome]]:
        service = request.service_name or self.settings.service_name
        if service is None:
            raise Rejection(
                "invalid_request",
                "service_name: not given and no SMS_WORKER_SERVICE_NAME default",
                field="service_name",
            )
        normalized = phones.normalize_all(request.receivers, self.settings.default_region)
        invalid = [
            ReceiverOutcome(receiver=r.given, status="invalid", reason=r.reason) for r in normalized if not r.valid
        ]
        valid = [r for r in normalized if r.valid]
        if self.policy is not None and valid:  # sender and blacklist, before any credit is reserved
            try:
                valid, blocked = self.policy.screen(request, service, valid)
            except Rejection as rejection:
                rejection.outcomes[:0] = invalid  # the invalid ones were set aside first
                raise
            invalid += blocked
        if not valid:
            raise Rejection(
                "no_valid_receivers", "receivers: none is a valid phone number", field="receivers", outcomes=invalid
            )
        rates: dict[str, float] = {}
        priced = []
        for receiver in valid:
            try:
                rates[receiver.e164 or ""] = self.rates.rate(receiver.region or "")
                priced.append(receiver)
            except credits.UnknownDestination as exc:
                invalid.append(ReceiverOutcome(receiver=receiver.given, status="invalid", reason=str(exc)))
            except credits.RateUnknown as exc:
                raise _WaitForRate(str(exc)) from None
        if not priced:
            raise Rejection("no_valid_receivers", "receivers: none can be sent to", field="receivers", outcomes=invalid)
        by_text: dict[str, list[phones.Receiver]] = defaultdict(list)
        for receiver in priced:
            values = request.variables.get(receiver.given) if request.variables else None
            by_text[mailmerge.render(request.message, values)].append(receiver)
        reply_to = "" if request.reply_to == self.settings.results_queue else request.reply_to
        batches = []
        for text, group in by_text.items():
            if not text.strip():
                raise Rejection("invalid_request", "message: blank once variables are filled in", field="message")
            try:
                estimate = credits.estimate(text, no_stop_clause=request.no_stop_clause)
            except credits.MessageTooLong as exc:
                raise Rejection("message_too_long", f"message: {exc}", field="message") from None
            body = ovh_body(request, text, self.settings.sender)
            meta = encode_meta(service, request.user, request.lane, body, hold_ms=hold_ms)
            entries = [
                Entry(0, request.request_id, r.e164 or "", estimate.parts * rates[r.e164 or ""], reply_to)
                for r in group
            ]
            batches.append(Batch(lane=request.lane, meta=meta, entries=entries, not_before_ms=hold_ms))
        return batches, invalid

    # -- rejecting ----------------------------------------------------------------------------------

    def _reject(
        self, request_id: str, data: dict[str, Any], rejection: Rejection, lane: str, delivery: Delivery
    ) -> str:
        """Publish the request's ``rejected`` result (once: a repeat publishes nothing); a
        transient rejection leaves its id free to be sent again."""
        try:  # the contract's own rule for queue names (lane queues are refused)
            reply_to = _QUEUE_NAME.validate_python(data.get("reply_to"))
        except ValidationError:
            reply_to = self.settings.results_queue
        fields: dict[str, Any] = {
            "request_id": request_id,
            "status": "rejected",
            "receivers": rejection.outcomes,
            "error": rejection.error,
            "finished_at": time.time(),
        }
        result = SendResult.model_validate(fields)
        for key, value in _echoed(data).items():  # each echoed field on its own: one bad one drops only itself
            try:
                result = SendResult.model_validate({**result.model_dump(), key: value})
            except ValidationError:
                continue
        service = result.service_name or self.settings.service_name
        published = until_redis_answers(
            lambda: self.buffers.reject(
                request_id,
                result.model_dump_json(exclude_none=True),
                reply_to,
                service=service if service and _SERVICE_NAME.fullmatch(service) else None,
                tag=result.tag,
                transient=rejection.error.code in TRANSIENT_REJECTIONS,
                delivery=delivery.message_id,
            ),
            outage_s=self.settings.redis_outage_s,
            what="publish a rejection",
        )
        if not published:
            return "duplicate"
        self.telemetry.request_rejected(request_id, lane, rejection.error.code)
        return "rejected"


def _fragment(outcome: ReceiverOutcome) -> Fragment:
    """A receiver set aside at accept, as its result will list it."""
    fragment: Fragment = {"receiver": outcome.receiver, "status": outcome.status}
    if outcome.reason is not None:
        fragment["reason"] = outcome.reason
    return fragment


def _echoed(data: dict[str, Any]) -> dict[str, Any]:
    """The request fields a rejected result echoes back, when they are of the right kind and size."""
    echoed = {
        key: data.get(key)
        for key, kind in (("service_name", str), ("user", str), ("tag", str), ("metadata", dict))
        if isinstance(data.get(key), kind)
    }
    metadata = echoed.get("metadata")
    if metadata is not None:
        try:
            too_big = len(json.dumps(metadata, separators=(",", ":"))) > MAX_METADATA_BYTES
        except (TypeError, ValueError):
            too_big = True
        if too_big:  # refused for its size: never copied whole into the result
            del echoed["metadata"]
    return {key: value for key, value in echoed.items() if not (isinstance(value, str) and len(value) > 128)}
