"""What an attempt did for each request in it: the ``Outcome`` that ``settle.lua`` applies.

Three sources of truth: OVH's ``SmsSendingReport`` (``from_report``), a refusal
(``from_failure``), and what a reconciliation found in OVH's records (``from_findings``: each
receiver found, proven absent and resent, or unknown after the deadline). Credits are always
OVH's own figures; the estimate only decides the reservation.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

from contracts.models import CreditUsage
from worker.attempts.lifecycle import Attempt, ErrorFragment, Event, Outcome, Settlement, Tracking, by_request
from worker.batching.buffers import Entry, Fragment
from worker.errors import AmbiguousError, GatewayError
from worker.ovhcloud.jobs import SendingReport
from worker.phones import e164


def error_of(exc: GatewayError) -> ErrorFragment:
    code = "outcome_unknown" if isinstance(exc, AmbiguousError) else "ovh_error"
    error: ErrorFragment = {"code": code, "message": exc.message}
    if exc.ovh_class is not None:
        error["ovh_class"] = exc.ovh_class
    if exc.query_id is not None:
        error["ovh_query_id"] = exc.query_id
    return error


@dataclass(frozen=True, slots=True)
class Sent:
    """One receiver OVH accepted: its SMS id and the credits OVH removed for it."""

    ovh_id: int | None
    credits: float


def from_failure(attempt: Attempt, exc: GatewayError, default_queue: str) -> Outcome:
    """Every receiver of the call failed: OVH refused it; all reserved credits are refunded."""
    settlements = [
        Settlement(
            request_id=request_id,
            reply_to=entries[0].reply_to or default_queue,
            n_in_call=len(entries),
            n_failed=len(entries),
            outcomes=tuple(Fragment(receiver=e.receiver, status="failed", reason=exc.message) for e in entries),
            error=error_of(exc),
            reserved=sum(e.credits for e in entries),
        )
        for request_id, entries in by_request(attempt.entries).items()
    ]
    return _with_events(attempt, settlements, default_queue)


def from_report(attempt: Attempt, report: SendingReport, default_queue: str) -> Outcome:
    """Map OVH's ``SmsSendingReport`` back onto each request of the call.

    Receivers missing from the report are neither sent nor refused: they are ``unknown`` (their
    credits kept as spent).
    """
    sent, refused = from_report_findings(attempt, report)
    return from_findings(
        attempt, sent, refused=refused, unknown_reason="not in OVH's report", default_queue=default_queue
    )


def from_report_findings(attempt: Attempt, report: SendingReport) -> tuple[dict[str, Sent], dict[str, str]]:
    """What OVH's ``SmsSendingReport`` says of each receiver: sent (with its id, in the order of
    ``validReceivers``: a call carries each receiver once) or refused.

    ``totalCreditsRemoved`` is apportioned to the receivers OVH accepted by their estimated
    credits, so the shares add up to OVH's figure exactly.
    """
    # OVH reports receivers as sent (E.164); another spelling is normalized, an invalid one kept
    valid = [e164(r) or r for r in report.get("validReceivers") or []]
    invalid = {e164(r) or r for r in report.get("invalidReceivers") or []}
    ids = report.get("ids") or []
    id_of = dict(zip(valid, ids, strict=False)) if len(ids) == len(valid) else {}
    valid_set = set(valid)  # once: this is per call of up to 500 receivers
    accepted = [e for e in attempt.entries if e.receiver in valid_set]
    total = float(report.get("totalCreditsRemoved") or 0.0)
    weight = sum(e.credits for e in accepted) or 1.0
    sent: dict[str, Sent] = {}
    shared = 0.0
    for n, entry in enumerate(accepted):
        share = total - shared if n == len(accepted) - 1 else total * entry.credits / weight
        shared += share
        sent[entry.receiver] = Sent(id_of.get(entry.receiver), share)
    return sent, {r: "refused by OVH" for r in invalid}


def from_findings(
    attempt: Attempt,
    sent: dict[str, Sent],
    *,
    refused: dict[str, str] | None = None,
    resend: set[str] | None = None,
    unknown_reason: str = "",
    default_queue: str,
) -> Outcome:
    """Settle each receiver: ``sent`` (with OVH's id and credits), ``refused`` (invalid), staged
    again (``resend``: proven absent), else ``unknown`` with ``unknown_reason``."""
    refused = refused or {}
    resend = resend or set()
    settlements = []
    again: list[Entry] = []
    for request_id, entries in by_request(attempt.entries).items():
        outcomes: list[Fragment] = []
        n_sent = n_unknown = 0
        credits = unconfirmed = reserved = 0.0
        for entry in entries:
            if entry.receiver in resend and entry.receiver not in sent:
                again.append(entry)
                continue
            reserved += entry.credits
            found = sent.get(entry.receiver)
            if found is not None:
                sent_one = Fragment(receiver=entry.receiver, status="sent")
                if found.ovh_id is not None:
                    sent_one["ovh_id"] = found.ovh_id
                outcomes.append(sent_one)
                n_sent += 1
                credits += found.credits
            elif entry.receiver in refused:
                outcomes.append(Fragment(receiver=entry.receiver, status="invalid", reason=refused[entry.receiver]))
            else:
                outcomes.append(Fragment(receiver=entry.receiver, status="unknown", reason=unknown_reason))
                n_unknown += 1
                unconfirmed += entry.credits
        n_in_call = len(outcomes)
        if not n_in_call:
            continue  # every receiver of this request is resent: nothing settles for it yet
        error = ErrorFragment(code="outcome_unknown", message=unknown_reason) if n_unknown else None
        settlements.append(
            Settlement(
                request_id=request_id,
                reply_to=entries[0].reply_to or default_queue,
                n_in_call=n_in_call,
                n_sent=n_sent,
                n_unknown=n_unknown,
                credits=credits,
                outcomes=tuple(outcomes),
                error=error,
                reserved=reserved,
                unconfirmed=unconfirmed,
            )
        )
    outcome = _with_events(attempt, settlements, default_queue)
    tracking = tracking_records(attempt, settlements)
    return Outcome(settlements, outcome.events, tracking, again)


def _with_events(attempt: Attempt, settlements: list[Settlement], default_queue: str) -> Outcome:
    """One ``CreditUsage`` per results queue among the call's requests, with that queue's share.

    ``credits_reserved`` = ``credits_used`` (OVH's) + ``credits_unconfirmed`` (outcome unknown,
    kept as spent) + ``credits_refunded``, unless OVH removed more than was estimated (then
    nothing is refunded). The settle step adds the user's ``quota_left``.
    """
    by_queue: dict[str, list[Settlement]] = defaultdict(list)
    for settlement in settlements:
        by_queue[settlement.reply_to].append(settlement)
    events = []
    for queue, group in by_queue.items():
        used = sum(s.credits for s in group)
        held = sum(s.reserved for s in group)
        unconfirmed = sum(s.unconfirmed for s in group)
        usage = CreditUsage(
            call_id=attempt.call_id,
            service_name=attempt.service,
            user=attempt.login,
            lane=attempt.lane,
            request_ids=[s.request_id for s in group],
            receivers=sum(s.n_in_call for s in group),
            credits_reserved=held,
            credits_used=used,
            credits_refunded=max(held - used - unconfirmed, 0.0),
            credits_unconfirmed=unconfirmed,
            at=time.time(),
        )
        events.append(Event(queue, f"credit-usage:{uuid.uuid4().hex}", usage.model_dump_json(exclude_none=True)))
    return Outcome(settlements, events)


def tracking_records(attempt: Attempt, settlements: list[Settlement]) -> list[Tracking]:
    """One record per SMS OVH accepted with an id: what a delivery report is mapped back with."""
    sent_at = round(time.time(), 3)
    return [
        Tracking(
            id=outcome["ovh_id"],
            request_id=settlement.request_id,
            receiver=outcome["receiver"],
            reply_to=settlement.reply_to,
            tag=attempt.meta.tag,
            service=attempt.service,
            login=attempt.login,
            call_id=attempt.call_id,
            sent_at=sent_at,
        )
        for settlement in settlements
        for outcome in settlement.outcomes
        if outcome["status"] == "sent" and "ovh_id" in outcome
    ]
