"""The attempt lifecycle: one OVH jobs call, from the receivers it takes to its settlement.

::

                 claim (slot held)            answer recorded
    buffer ───────────────────────▶ calling ─────────────────────▶ settled (results published)
      ▲                              │   ▲  │
      │      uncall: the try surely  │   │  │ ambiguous: timeout or reset after sending,
      │      did not reach OVH       ▼   │  │ 500/502, or its owner lost its lease mid-call
      │                            claimed  ▼
      ├──── release / takeover ──────┘   ambiguous ── reconcile ──▶ settled: found at OVH sent,
      │     (never called)                                             others resent, or unknown
      └───────────────────────── resend of receivers proven absent ◀───┘     after the deadline

Every transition is one Lua step (``lua/``, typed in ``steps``) that checks the attempt's state and
owner and reads Redis' clock, never a worker's. The owner is a *lease* (``worker.attempts.lease``):
a worker whose lease expired can neither call (``call``), nor settle (``settle``), nor give back
(``release``); any live worker takes its attempts over (``takeover``): claimed ones go back to
their buffer, calling ones to the reconcilers. OVH's answer is evidence, recorded by whoever
has it (``answer``), so a fenced-out owner still hands it over.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import redis

from contracts.wire import RESULT_ACTOR_NAME
from worker.attempts import steps
from worker.batching.buffers import CallMeta, Entry, Fragment
from worker.ovhcloud.jobs import SendingReport
from worker.settings import Settings
from worker.store import keys, scripts


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt as its holder sees it: what it carries and where its results go."""

    call_id: str
    lane: str
    batch_key: str
    meta: CallMeta
    entries: list[Entry]
    # Filled for ambiguous attempts (Redis ms) and when OVH's answer was recorded:
    called_at_ms: int = 0
    absent_after_ms: int = 0
    deadline_ms: int = 0
    reason: str = ""
    report: SendingReport | None = None

    @property
    def service(self) -> str:
        return self.meta.service

    @property
    def login(self) -> str | None:
        return self.meta.login


class ErrorFragment(TypedDict, total=False):
    """Why a request (or its receivers) was not sent, as its result's ``error`` says (``ErrorInfo``)."""

    code: str
    message: str
    ovh_class: str
    ovh_query_id: str


class Tracking(TypedDict):
    """One SMS OVH accepted, mapped back to its request and receiver (``keys.sms``)."""

    id: int
    request_id: str
    receiver: str
    reply_to: str
    tag: str | None
    service: str
    login: str | None
    call_id: str
    sent_at: float


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one attempt did for one request."""

    request_id: str
    reply_to: str  # results queue (resolved: never empty)
    n_in_call: int  # receivers of the request this settlement resolves
    n_sent: int = 0
    n_failed: int = 0
    n_unknown: int = 0
    credits: float = 0.0  # OVH's credits for the request's receivers
    outcomes: tuple[Fragment, ...] = ()
    error: ErrorFragment | None = None
    reserved: float = 0.0  # estimated credits of those receivers (released from the quota)
    unconfirmed: float = 0.0  # of those, the ones of unknown outcome: kept as spent, never refunded

    @property
    def spent(self) -> float:
        """Credits moved to the user's ``spent``; the rest of ``reserved`` is refunded."""
        return self.credits + self.unconfirmed


@dataclass(frozen=True, slots=True)
class Event:
    """A ``CreditUsage`` for a results queue (settle adds ``quota_left`` when the user has a quota)."""

    queue: str
    message_id: str
    payload: str  # JSON object, without quota_left


@dataclass(frozen=True, slots=True)
class Outcome:
    """Everything one settle step applies."""

    settlements: list[Settlement]
    events: list[Event] = field(default_factory=list)
    tracking: list[Tracking] = field(default_factory=list)  # see keys.sms: one per SMS OVH accepted
    resend: list[Entry] = field(default_factory=list)  # receivers proven absent: staged again


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds attempts: a worker's name and its current lease token."""

    worker: str
    token: str


@dataclass(frozen=True, slots=True)
class Held:
    """A claimed or calling attempt, as the lease sweep sees it."""

    call_id: str
    owner: str  # lease token
    batch_key: str
    lane: str


@dataclass(frozen=True, slots=True)
class NoneDue:
    """No ambiguous attempt is due for a look; ``next_due_ms``: when one is (Redis ms), ``None``: none at all."""

    next_due_ms: int | None


class Attempts:
    """The attempt transitions, for dispatchers, the lease sweep and the reconcilers.

    ``attempt_ttl_s`` is a safety net only (an attempt is settled long before); ``grace_ms``
    and ``deadline_ms`` are given to every attempt that becomes ambiguous (see ``reconcile``);
    ``campaign_stats_ttl_s`` is how long a tag's campaign statistics live (0: not kept).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        default_queue: str,
        result_ttl_s: int,
        request_ttl_s: int,
        attempt_ttl_s: int,
        queue_cap: int,
        tracking_ttl_s: int,
        grace_ms: int,
        deadline_ms: int,
        campaign_stats_ttl_s: int = 0,
    ) -> None:
        self.redis = client
        self.default_queue = default_queue
        self.result_ttl_s = result_ttl_s
        self.request_ttl_s = request_ttl_s
        self.attempt_ttl_s = attempt_ttl_s
        self.queue_cap = queue_cap
        self.tracking_ttl_s = tracking_ttl_s
        self.grace_ms = grace_ms
        self.deadline_ms = deadline_ms
        self.campaign_stats_ttl_s = campaign_stats_ttl_s
        self._claim = steps.Claim(client)
        self._transition = steps.Transition(client)
        self._release = steps.Release(client)
        self._takeover = steps.Takeover(client)
        self._settle = steps.Settle(client)
        self._pick = steps.Pick(client)

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings) -> Attempts:
        """The attempts as ``settings`` configure them (every process builds them this way)."""
        return cls(
            client,
            default_queue=settings.results_queue,
            result_ttl_s=settings.result_ttl_s,
            request_ttl_s=settings.request_ttl_s,
            attempt_ttl_s=settings.request_ttl_s,
            queue_cap=settings.results_queue_max_length,
            tracking_ttl_s=settings.delivery_tracking_ttl_s,
            campaign_stats_ttl_s=settings.campaign_stats_ttl_s,
            grace_ms=int(settings.reconcile_grace_s * 1000),
            deadline_ms=int(settings.reconcile_deadline_s * 1000),
        )

    def reply_to(self, entry: Entry) -> str:
        return entry.reply_to or self.default_queue

    # -- the owner's steps ----------------------------------------------------------------------

    def claim(
        self, owner: Owner, lane: str, batch_key: str, call_id: str, *, linger_ms: int, max_receivers: int
    ) -> Attempt | steps.NothingDue | steps.LeaseLost:
        """Take up to ``max_receivers`` of a due buffer into a new attempt in state calling."""
        reply = self._claim(
            {
                "lease": keys.lease(owner.token),
                "due": keys.due(lane),
                "buffer": keys.buffer(batch_key),
                "buffer_meta": keys.buffer_meta(batch_key),
                "inflight": keys.INFLIGHT,
                "attempt": keys.attempt(call_id),
            },
            {
                "call_id": call_id,
                "batch_key": batch_key,
                "lane": lane,
                "linger_ms": linger_ms,
                "max": max_receivers,
                "worker": owner.worker,
                "token": owner.token,
                "attempt_ttl_s": self.attempt_ttl_s,
            },
        )
        if not isinstance(reply, steps.Claimed):
            return reply
        return Attempt(call_id, lane, batch_key, CallMeta.decode(reply.meta), [Entry.decode(e) for e in reply.entries])

    def _transition_keys(self, call_id: str, token: str) -> steps.TransitionKeys:
        return {
            "attempt": keys.attempt(call_id),
            "lease": keys.lease(token),
            "inflight": keys.INFLIGHT,
            "reconcile": keys.RECONCILE,
            "reconcile_wake": keys.RECONCILE_WAKE,
        }

    def _step(self, op: str, owner: Owner, call_id: str) -> steps.TransitionDocument:
        return {"op": op, "call_id": call_id, "token": owner.token, "worker": owner.worker}

    def call(self, owner: Owner, call_id: str) -> bool:
        """claimed -> calling, right before a retry leaves; ``False`` when fenced out."""
        document = self._step("call", owner, call_id)
        return self._transition(self._transition_keys(call_id, owner.token), document) == "applied"

    def uncall(self, owner: Owner, call_id: str) -> bool:
        """calling -> claimed: the try surely did not reach OVH (connect error, 429, 503)."""
        document = self._step("uncall", owner, call_id)
        return self._transition(self._transition_keys(call_id, owner.token), document) == "applied"

    def answer(self, call_id: str, report: SendingReport) -> str:
        """Record OVH's answer on the attempt (allowed to anyone: it is evidence); its state, or ''."""
        document: steps.TransitionDocument = {
            "op": "answer",
            "call_id": call_id,
            "token": "",
            "worker": "",
            "report": scripts.json_text(report),
        }
        return self._transition(self._transition_keys(call_id, ""), document)

    def ambiguous(self, owner: Owner, call_id: str, reason: str) -> bool:
        """calling -> ambiguous: the call may have been carried out; the reconcilers take it."""
        document = self._step("ambiguous", owner, call_id)
        document["reason"] = reason
        document["grace_ms"] = self.grace_ms
        document["deadline_ms"] = self.deadline_ms
        return self._transition(self._transition_keys(call_id, owner.token), document) == "applied"

    def release(self, owner: Owner, attempt: Attempt) -> int:
        """Give back an attempt whose call did not leave: its receivers go back to their buffer."""
        return self._release(
            {
                "attempt": keys.attempt(attempt.call_id),
                "lease": keys.lease(owner.token),
                "inflight": keys.INFLIGHT,
                **self._buffer_keys(attempt.batch_key, attempt.lane),
            },
            {"call_id": attempt.call_id, "token": owner.token, "worker": owner.worker},
        )

    def settle(self, attempt: Attempt, outcome: Outcome, *, owner: Owner | None) -> list[str] | None:
        """Apply ``outcome``; ``owner`` for the holder's own settlement, ``None`` for a reconciler's.

        Returns the status of each result published, or ``None`` when this caller may not settle
        the attempt (fenced out, or settled already).
        """
        refs = self._settle.refs()
        settlements: list[steps.SettleRequest] = [
            {
                "id": s.request_id,
                "req": refs(keys.request(s.request_id)),
                "outcomes": refs(keys.outcomes(s.request_id)),
                "result": refs(keys.result(s.request_id)),
                "ready": refs(keys.result_ready(s.request_id)),
                "q": refs(keys.queue(s.reply_to)),
                "msgs": refs(keys.queue_messages(s.reply_to)),
                "queue": s.reply_to,
                "n_in_call": s.n_in_call,
                "n_sent": s.n_sent,
                "n_failed": s.n_failed,
                "n_unknown": s.n_unknown,
                "credits": s.credits,
                "fragments": ",".join(scripts.json_text(o) for o in s.outcomes),
                "error": "" if s.error is None else scripts.json_text(s.error),
                "reserved": s.reserved,
                "spent": s.spent,
            }
            for s in outcome.settlements
        ]
        events: list[steps.SettleEvent] = [
            {
                "q": refs(keys.queue(e.queue)),
                "msgs": refs(keys.queue_messages(e.queue)),
                "queue": e.queue,
                "message_id": e.message_id,
                "payload": e.payload,
            }
            for e in outcome.events
        ]
        tracking: list[steps.SettleTracking] = [
            {
                "key": refs(keys.sms(record["id"])),
                "id": record["id"],
                "fields": {k: v for k, v in record.items() if v is not None and k != "id"},  # type: ignore[misc]
            }
            for record in outcome.tracking
        ]
        document: steps.SettleDocument = {
            "call_id": attempt.call_id,
            "fence": "owner" if owner is not None else "reconciler",
            "token": owner.token if owner else "",
            "worker": owner.worker if owner else "",
            "result_ttl_s": self.result_ttl_s,
            "request_ttl_s": self.request_ttl_s,
            "queue_cap": self.queue_cap,
            "result_actor": RESULT_ACTOR_NAME,
            "settlements": settlements,
            "events": events,
            "tracking_ttl_s": self.tracking_ttl_s,
            "tracking": tracking,
            "resend": [entry.encode() for entry in outcome.resend],
        }
        if attempt.login is not None:
            document["quota"] = refs(keys.quota(attempt.service, attempt.login))
        # -- campaign statistics of the attempt's tag (lua/_campaign.lua, worker.campaigns.stats) --
        tag = attempt.meta.tag
        if tag and self.campaign_stats_ttl_s > 0:
            done = outcome.settlements
            document["campaign"] = {
                "key": refs(keys.campaign_stats(attempt.service, tag)),
                "service": attempt.service,
                "tag": tag,
                "ttl_s": self.campaign_stats_ttl_s,
                "sent": sum(s.n_sent for s in done),
                "failed": sum(s.n_failed for s in done),
                "invalid": sum(s.n_in_call - s.n_sent - s.n_failed - s.n_unknown for s in done),
                "unknown": sum(s.n_unknown for s in done),
                "credits": sum(s.credits for s in done),
            }
        # -- end of campaign statistics -----------------------------------------------------------
        fixed: steps.SettleKeys = {
            "attempt": keys.attempt(attempt.call_id),
            "lease": keys.lease(owner.token if owner else ""),
            "inflight": keys.INFLIGHT,
            "reconcile": keys.RECONCILE,
            "stats": keys.STATS,
            **self._buffer_keys(attempt.batch_key, attempt.lane),
            "pull": keys.PULL,
            "receipts": keys.RECEIPTS,
        }
        reply = self._settle(fixed, document, refs)
        return reply.published if isinstance(reply, steps.Settled) else None

    # -- the lease sweep ------------------------------------------------------------------------

    def held(self) -> list[Held]:
        """Every claimed or calling attempt."""
        call_ids = [scripts.text(c) for c in self.redis.zrange(keys.INFLIGHT, 0, -1)]
        with self.redis.pipeline(transaction=False) as pipe:
            for call_id in call_ids:
                pipe.hmget(keys.attempt(call_id), "owner", "batch_key", "lane")
            rows = pipe.execute()
        held = []
        for call_id, (owner, batch_key, lane) in zip(call_ids, rows, strict=True):
            if owner is None:  # gone (settled meanwhile, or expired): drop it from the index
                self.redis.zrem(keys.INFLIGHT, call_id)
                continue
            held.append(Held(call_id, scripts.text(owner), scripts.text(batch_key), scripts.text(lane)))
        return held

    def sweep(self, reason: str) -> list[tuple[str, str]]:
        """Take over every attempt whose owner's lease expired; ``(call_id, what happened)`` each."""
        held = self.held()
        owners = sorted({h.owner for h in held})
        with self.redis.pipeline(transaction=False) as pipe:
            for owner in owners:
                pipe.exists(keys.lease(owner))
            alive = dict(zip(owners, pipe.execute(), strict=True))
        done = []
        for h in held:
            if alive[h.owner]:
                continue
            what = self._takeover(
                {
                    "attempt": keys.attempt(h.call_id),
                    "owner_lease": keys.lease(h.owner),
                    "inflight": keys.INFLIGHT,
                    "reconcile": keys.RECONCILE,
                    "reconcile_wake": keys.RECONCILE_WAKE,
                    **self._buffer_keys(h.batch_key, h.lane),
                },
                {
                    "call_id": h.call_id,
                    "owner": h.owner,
                    "batch_key": h.batch_key,
                    "grace_ms": self.grace_ms,
                    "deadline_ms": self.deadline_ms,
                    "reason": reason,
                },
            )
            if what:
                done.append((h.call_id, what))
        return done

    # -- the reconcilers' side ------------------------------------------------------------------

    def next_ambiguous(self, visibility_ms: int) -> Attempt | NoneDue:
        """Take the next ambiguous attempt due for a look, hiding it from other reconcilers for
        ``visibility_ms``; else when the next one is due."""
        call_id, next_due = self._pick({"reconcile": keys.RECONCILE}, {"visibility_ms": visibility_ms})
        if not call_id:
            return NoneDue(None if next_due < 0 else next_due)
        found = self.load(call_id)
        if found is None:  # settled meanwhile
            self.redis.zrem(keys.RECONCILE, call_id)
            return NoneDue(0)
        return found

    def load(self, call_id: str) -> Attempt | None:
        """The attempt as stored (``None`` if gone)."""
        raw = {scripts.text(k): scripts.text(v) for k, v in self.redis.hgetall(keys.attempt(call_id)).items()}
        if "meta" not in raw:
            return None
        return Attempt(
            call_id=call_id,
            lane=raw["lane"],
            batch_key=raw["batch_key"],
            meta=CallMeta.decode(raw["meta"]),
            entries=[Entry.decode(line) for line in raw["entries"].split("\n") if line],
            called_at_ms=int(raw.get("called_at") or 0),
            absent_after_ms=int(raw.get("absent_after") or 0),
            deadline_ms=int(raw.get("deadline") or 0),
            reason=raw.get("reason", ""),
            report=json.loads(raw["report"]) if raw.get("report") else None,
        )

    def look_again(self, call_id: str, at_ms: int) -> None:
        """Schedule the next look at an ambiguous attempt (Redis ms)."""
        self.redis.zadd(keys.RECONCILE, {call_id: at_ms}, xx=True)

    def ambiguous_count(self) -> int:
        return int(self.redis.zcard(keys.RECONCILE))

    @staticmethod
    def _buffer_keys(batch_key: str, lane: str) -> steps.BufferKeys:
        return {
            "buffer": keys.buffer(batch_key),
            "buffer_meta": keys.buffer_meta(batch_key),
            "due": keys.due(lane),
            "wake": keys.wake(lane),
        }


def by_request(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """Entries grouped by request, in the order requests first appear."""
    grouped: dict[str, list[Entry]] = {}
    for entry in entries:
        grouped.setdefault(entry.request_id, []).append(entry)
    return grouped


def receivers_of(entries: Sequence[Entry]) -> list[str]:
    return [entry.receiver for entry in entries]
