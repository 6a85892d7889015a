"""The accept stage: from a queued payload to receivers staged in batch buffers.

Parse and validate the request; normalize receivers (invalid ones set aside); render mail
merge; estimate credits (parts times each destination's rate); check the account can pay
(best effort); then dedupe, reserve the user's quota and stage in one atomic Redis step. A
request that cannot be sent gets its one ``rejected`` result here. A payload whose request id
cannot be read raises ``UnreadablePayload``: the actor lets dramatiq dead-letter it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import dramatiq
from pydantic import TypeAdapter, ValidationError

from contracts.models import (
    REQUEST_ID_PATTERN,
    ErrorInfo,
    QueueName,
    ReceiverOutcome,
    SendRequest,
    SendResult,
    describe_validation_error,
)
from contracts.wire import CONTRACT_VERSION, DEFAULT_LANE, accept_actor_name, lane_queue

from ..accounting import credits
from ..accounting.quotas import EPSILON as QUOTA_EPSILON
from ..accounting.quotas import QuotaStore
from ..errors import UnreadablePayload
from ..settings import Settings
from . import mailmerge, receivers
from .buffers import Batch, BatchBuffer, Entry, QuotaRequest, Staging, now_ms
from .policy import Policy, PolicyRefusal

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
_QUEUE_NAME: TypeAdapter[str] = TypeAdapter(QueueName)


class Rejection(Exception):
    """The request cannot be sent; carries what its ``rejected`` result says."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        outcomes: Sequence[ReceiverOutcome] = (),
        credits_needed: float | None = None,
        credits_left: float | None = None,
    ):
        super().__init__(message)
        self.error = ErrorInfo(
            code=code, message=message, field=field, credits_needed=credits_needed, credits_left=credits_left
        )
        self.outcomes = list(outcomes)


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


def ovh_body(request: SendRequest, text: str, default_sender: str | None) -> dict[str, Any]:
    """The jobs call body for ``text`` (receivers are added at dispatch), in OVH's names."""
    body: dict[str, Any] = {
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


class AcceptStage:
    """``rates`` prices each destination; ``balance`` (optional) backs the account check;
    ``quotas`` (optional) tells which users OVH holds a quota for (the account does not pay)."""

    def __init__(
        self,
        settings: Settings,
        buffer: BatchBuffer,
        *,
        rates: credits.RateTable,
        balance: credits.AccountBalance | None = None,
        quotas: QuotaStore | None = None,
    ) -> None:
        self.settings = settings
        self.buffer = buffer
        self.rates = rates
        self.balance = balance
        self.quotas = quotas
        self.policy: Policy | None = None  # policy hook: sender and blacklist checks, set by build_app

    def __call__(self, payload: Any, *, lane: str | None = None) -> list[str]:
        """Accept one request or a pack of them (a JSON array); one outcome per readable request.

        Outcomes are ``staged``, ``duplicate`` or ``rejected``. The requests of a pack are staged
        in one round trip. A payload of which no request id can be read raises
        ``UnreadablePayload`` (dramatiq dead-letters the message); in a pack where some can be
        read, each unreadable item is dead-lettered on its own (``lane`` names the queue).
        """
        items = _items(payload)
        if self.policy is not None:  # policy hook: the blacklist is re-read once per message
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
        if not readable:
            raise UnreadablePayload("no request of the pack has a readable request_id")
        for item, reason in unreadable:
            self._dead_letter(item, reason, lane)
        outcomes: dict[int, str] = {}
        stagings: list[Staging] = []
        staged: list[tuple[int, SendRequest, str, float, bool]] = []
        held: dict[str, float] = defaultdict(float)  # credits this pack already asked of each account
        for n, (request_id, data) in enumerate(readable):
            try:
                request = self._validate(data)
                batches, invalid = self._prepare(request)
                service = batches[0].meta["service"]
                needed = sum(entry.credits for batch in batches for entry in batch.entries)
                debit = self._check_account(request, service, needed, already=held[service])
            except Rejection as rejection:
                outcomes[n] = self._reject(request_id, data, rejection)
                continue
            if debit:
                held[service] += needed
            skeleton = {
                "kind": "send_result",
                "version": CONTRACT_VERSION,
                "request_id": request_id,
                "service_name": service,
                "user": request.user,
                "tag": request.tag,
                "metadata": request.metadata,
                "accepted_at": time.time(),
            }
            stagings.append(
                Staging(
                    request_id=request_id,
                    skeleton=skeleton,
                    reply_to=request.reply_to,
                    invalid_outcomes=[o.model_dump(exclude_none=True) for o in invalid],
                    batches=batches,
                    quota=self._quota_request(request, service),
                )
            )
            staged.append((n, request, service, needed, debit))
        for (n, request, service, needed, debit), outcome in zip(
            staged, self.buffer.stage_many(stagings, linger_ms=self.settings.linger_ms), strict=True
        ):
            if outcome == "quota_exceeded":
                log.info(
                    "request %s rejected: quota_exceeded (user %s, %g credits)",
                    request.request_id,
                    request.user,
                    needed,
                )
                outcomes[n] = "rejected"
                continue
            if outcome == "staged" and debit and self.balance is not None:
                self.balance.debit(service, needed)
            outcomes[n] = outcome
        return [outcomes[n] for n in range(len(readable))]

    def _dead_letter(self, item: Any, exc: UnreadablePayload, lane: str | None) -> None:
        lane = lane or DEFAULT_LANE
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=lane_queue(lane), actor_name=accept_actor_name(lane), args=(item,), kwargs={}, options={}
        )
        log.error("dead-lettering one request of a pack on %s: %s", lane_queue(lane), exc)
        self.buffer.dead_letter(lane_queue(lane), message.encode().decode(), message.message_id)

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

    def _prepare(self, request: SendRequest) -> tuple[list[Batch], list[ReceiverOutcome]]:
        service = request.service_name or self.settings.service_name
        if service is None:
            raise Rejection(
                "invalid_request",
                "service_name: not given and no SMS_WORKER_SERVICE_NAME default",
                field="service_name",
            )
        normalized = receivers.normalize_all(request.receivers, self.settings.default_region)
        invalid = [
            ReceiverOutcome(receiver=r.given, status="invalid", reason=r.reason) for r in normalized if not r.valid
        ]
        valid = [r for r in normalized if r.valid]
        # -- policy hook (worker/pipeline/policy.py): sender and blacklist, before any credit --
        if self.policy is not None and valid:
            try:
                valid, blocked = self.policy.screen(request, service, valid)
            except PolicyRefusal as refusal:
                outcomes = invalid + refusal.outcomes
                raise Rejection(refusal.code, refusal.message, field=refusal.field, outcomes=outcomes) from None
            invalid += blocked
        # -- end of policy hook --
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
        if not priced:
            raise Rejection("no_valid_receivers", "receivers: none can be sent to", field="receivers", outcomes=invalid)
        by_text: dict[str, list[receivers.Receiver]] = defaultdict(list)
        for receiver in priced:
            values = request.variables.get(receiver.given) if request.variables else None
            by_text[mailmerge.render(request.message, values)].append(receiver)
        arrival = now_ms()
        batches = []
        for text, group in by_text.items():
            if not text.strip():
                raise Rejection("invalid_request", "message: blank once variables are filled in", field="message")
            try:
                estimate = credits.estimate(text, no_stop_clause=request.no_stop_clause)
            except credits.MessageTooLong as exc:
                raise Rejection("message_too_long", f"message: {exc}", field="message") from None
            meta = {
                "service": service,
                "login": request.user,
                "lane": request.lane,
                "body": ovh_body(request, text, self.settings.sender),
            }
            entries = [
                Entry(arrival, request.request_id, r.e164 or "", estimate.parts * rates[r.e164 or ""]) for r in group
            ]
            batches.append(Batch(lane=request.lane, meta=meta, entries=entries))
        return batches, invalid

    def _reject(self, request_id: str, data: dict[str, Any], rejection: Rejection) -> str:
        try:  # the contract's own rule for queue names
            reply_to = _QUEUE_NAME.validate_python(data.get("reply_to"))
        except ValidationError:
            reply_to = self.settings.results_queue
        echoed = {
            key: data.get(key)
            for key, kind in (("service_name", str), ("user", str), ("tag", str), ("metadata", dict))
            if isinstance(data.get(key), kind)
        }
        fields: dict[str, Any] = {
            "request_id": request_id,
            "status": "rejected",
            "receivers": rejection.outcomes,
            "error": rejection.error,
            "finished_at": time.time(),
        }
        try:
            result = SendResult.model_validate({**fields, **echoed})
        except ValidationError:  # an echoed field is out of range: leave them out
            result = SendResult.model_validate(fields)
        log.info("request %s rejected: %s (%s)", request_id, rejection.error.code, rejection.error.message)
        # Message ids name the request and the time, as stage.lua's and dispatch's do.
        published = self.buffer.reject(
            request_id, result.model_dump_json(exclude_none=True), reply_to, f"result:{request_id}:{now_ms()}"
        )
        return "rejected" if published else "duplicate"
