"""The attempt lifecycle: one OVH jobs call, from the receivers it takes to its settlement.

::

                 claim (slot held)        call: a try leaves         OVH's answer
    buffer ───────────────────────▶ claimed ──────────────────▶ calling ──────────────▶ settled
      ▲   (each receiver once)        │   ▲                       │  │                (results
      │                               │   └── uncall: the try ────┘  │                 published)
      │                               │       surely did not reach   │ ambiguous: timeout or reset
      ├──── release / takeover ───────┘       OVH (429, 503...)      │ after sending, 500/502, or
      │     (never called)                                           ▼ its owner lost its lease
      │                                                          ambiguous ── reconcile ──▶ settled:
      └──────────────────────── resend of receivers proven absent ◀───┘   found at OVH sent, the
                                                                           others resent or unknown

Every transition is one Lua step (``lua/``, typed in ``steps``) that checks the attempt's state and
owner and reads Redis' clock, never a worker's. The owner is a *lease* (``worker.attempts.lease``):
a worker whose lease expired can neither call (``call``), nor settle (``settle``), nor give back
(``release``); any live worker takes its attempts over (``takeover``): claimed ones go back to
their buffer, calling ones to the reconcilers. OVH's answer is evidence, recorded by whoever
has it (``answer``), so a fenced-out owner still hands it over.

Every step survives a lost reply: each carries a token chosen before it is sent (the call id for
``claim``, the try number for ``call``, ``uncall`` and ``ambiguous``, the caller's token for
``settle`` and ``release``), so the same step sent again answers "already applied by you"
(``Step.ALREADY``, ``Settled.again``) and an owner is never fenced out by its own step; a
settled, released or taken-over attempt leaves a tombstone that answers it
(``Timing.tombstone_ttl_s``). Each step also says when the attempt goes stale (``stale_at``):
past it with no further step, the sweep takes it over even while its owner's lease lives.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import redis

from contracts.wire import RESULT_ACTOR_NAME
from worker.accounting.usage import UsageRecorder
from worker.attempts import steps
from worker.batching.buffers import CallMeta, Entry, Fragment
from worker.ovhcloud.jobs import SendingReport
from worker.settings import Settings
from worker.store import keys, scripts

#: The stale time of an attempt an older version claimed (it set none): only its lease counts.
NEVER_STALE = 2**62
#: The reason recorded on an attempt taken over from a live owner that made no progress.
STALLED_REASON = "the worker making the call made no progress past the call's deadline (it lost track of it)"


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt as its holder sees it: what it carries and where its results go."""

    call_id: str
    lane: str
    batch_key: str
    meta: CallMeta
    entries: list[Entry]
    # Filled for ambiguous attempts (Redis ms) and when OVH's answer was recorded:
    called_at_ms: int = 0  # when its last try left
    try_ms: int = 0  # that try's own deadline after called_at_ms (connect + read timeouts)
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
    stale_at_ms: int  # Redis ms: past it with no step from its owner, it is taken over


@dataclass(frozen=True, slots=True)
class Look:
    """What a reconciler saw, for the step that settles from it: its token; the attempts claimed,
    calling or ambiguous (``in_flight``) it read at ``listed_at`` (Redis ms), after its look at
    OVH's records; and ``rivals``: the unresolved attempts of another login with the same proof
    key and receivers that its look took into account (it checked whose each SMS found was)."""

    token: str
    listed_at: int
    in_flight: tuple[str, ...] = ()
    rivals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NoneDue:
    """No ambiguous attempt is due for a look; ``next_due_ms``: when one is (Redis ms), ``None``: none at all."""

    next_due_ms: int | None


@dataclass(frozen=True, slots=True)
class Timing:
    """How long each step of an attempt may take (ms unless named), from the settings.

    - ``try_ms``: one try's own deadline, connect plus read timeout: OVH may carry a call out
      until then, so its receivers are absent only after it (plus ``grace_ms``);
    - ``step_ms``: how long an owner may take to go from one step to the next when nothing is in
      between (after a claim, after a try): a lease period; past it, and past ``try_ms`` for a
      try in flight, the sweep takes the attempt over even while the owner's lease lives;
    - ``grace_ms``: how long OVH's records get to show a call that was carried out;
    - ``deadline_ms``: how long unreadable records are retried before ``unknown``;
    - ``tombstone_ttl_s``: how long a settled, released or taken over attempt answers the same
      step sent again (longer than a step is retried through a Redis outage);
    - ``owned_ttl_s``: how long an SMS stays marked as one call's proof, at least: longer than
      any reconciliation whose window holds it (deadline, a try, a takeover, a margin).
    """

    try_ms: int
    step_ms: int
    grace_ms: int
    deadline_ms: int
    tombstone_ttl_s: int
    owned_ttl_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Timing:
        try_s = settings.ovh_connect_timeout_s + settings.ovh_read_timeout_s
        reach_s = settings.reconcile_deadline_s + settings.reconcile_grace_s + try_s + 2 * settings.lease_s
        return cls(
            try_ms=math.ceil(try_s * 1000),
            step_ms=math.ceil(settings.lease_s * 1000),
            grace_ms=math.ceil(settings.reconcile_grace_s * 1000),
            deadline_ms=math.ceil(settings.reconcile_deadline_s * 1000),
            tombstone_ttl_s=math.ceil(settings.redis_outage_s) + TOMBSTONE_MARGIN_S,
            owned_ttl_s=math.ceil(reach_s) + OWNED_MARGIN_S,
        )


#: Seconds a tombstone outlives the longest retry of a step through a Redis outage.
TOMBSTONE_MARGIN_S = 60
#: Seconds an SMS's proof mark outlives the longest reconciliation that could see it.
OWNED_MARGIN_S = 600


class Attempts:
    """The attempt transitions, for dispatchers, the lease sweep and the reconcilers.

    ``attempt_ttl_s`` is a safety net only (an attempt is settled long before); ``timing`` says
    how long each step may take (``Timing``); ``campaign_stats_ttl_s`` is how long a tag's
    campaign statistics live (0: not kept); ``pull_cap`` how many SMS pull mode's receipt index
    holds at most; ``usage`` counts each settled call's SMS and credits per day, user, tag and
    sender (None: not kept).
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
        timing: Timing,
        campaign_stats_ttl_s: int = 0,
        pull_cap: int = 50_000,
        usage: UsageRecorder | None = None,
    ) -> None:
        self.redis = client
        self.default_queue = default_queue
        self.result_ttl_s = result_ttl_s
        self.request_ttl_s = request_ttl_s
        self.attempt_ttl_s = attempt_ttl_s
        self.queue_cap = queue_cap
        self.tracking_ttl_s = tracking_ttl_s
        self.timing = timing
        self.campaign_stats_ttl_s = campaign_stats_ttl_s
        self.pull_cap = pull_cap
        self.usage = usage
        self._claim = steps.Claim(client)
        self._transition = steps.Transition(client)
        self._release = steps.Release(client)
        self._takeover = steps.Takeover(client)
        self._settle = steps.Settle(client)
        self._pick = steps.Pick(client)

    @classmethod
    def from_settings(
        cls, client: redis.Redis, settings: Settings, *, usage_clock: Callable[[], float] | None = None
    ) -> Attempts:
        """The attempts as ``settings`` configure them (every process builds them this way);
        ``usage_clock`` dates settled calls for ``sms-worker usage`` instead of Redis (tests)."""
        return cls(
            client,
            default_queue=settings.results_queue,
            result_ttl_s=settings.result_ttl_s,
            request_ttl_s=settings.request_ttl_s,
            attempt_ttl_s=settings.request_ttl_s,
            queue_cap=settings.results_queue_max_length,
            tracking_ttl_s=settings.delivery_tracking_ttl_s,
            timing=Timing.from_settings(settings),
            campaign_stats_ttl_s=settings.campaign_stats_ttl_s,
            pull_cap=settings.pull_max_pending,
            usage=UsageRecorder(
                client, ttl_s=settings.usage_ttl_s, timezone=settings.usage_timezone, clock=usage_clock
            ),
        )

    def reply_to(self, entry: Entry) -> str:
        return entry.reply_to or self.default_queue

    # -- the owner's steps ----------------------------------------------------------------------

    def claim(
        self, owner: Owner, lane: str, batch_key: str, call_id: str, *, linger_ms: int, max_receivers: int
    ) -> Attempt | steps.NothingDue | steps.LeaseLost | steps.ClaimGone:
        """Take up to ``max_receivers`` of a due buffer into a new attempt in state claimed, each
        receiver once. The same claim sent again (same ``call_id``) returns the same attempt."""
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
                "stale_ms": self.timing.step_ms,
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

    def call(self, owner: Owner, call_id: str, try_number: int) -> steps.Step:
        """claimed -> calling, right before try ``try_number`` (from 1) leaves."""
        return self._run(self._document("call", owner, call_id, try_number))

    def uncall(self, owner: Owner, call_id: str, try_number: int, *, next_step_ms: int | None = None) -> steps.Step:
        """calling -> claimed: the try surely did not reach OVH (connect error, 429, 503).
        ``next_step_ms``: how long until the owner's next try may start (backoff, slot)."""
        document = self._document("uncall", owner, call_id, try_number)
        document["stale_ms"] = self.timing.step_ms + (next_step_ms or 0)
        return self._run(document)

    def ambiguous(self, owner: Owner, call_id: str, try_number: int, reason: str) -> steps.Step:
        """calling -> ambiguous: the call may have been carried out; the reconcilers take it."""
        document = self._document("ambiguous", owner, call_id, try_number)
        document["reason"] = reason
        return self._run(document)

    def _document(self, op: str, owner: Owner, call_id: str, try_number: int) -> steps.TransitionDocument:
        return {
            "op": op,
            "call_id": call_id,
            "token": owner.token,
            "worker": owner.worker,
            "try_number": try_number,
            "try_ms": self.timing.try_ms,
            "stale_ms": self.timing.step_ms,
            "grace_ms": self.timing.grace_ms,
            "deadline_ms": self.timing.deadline_ms,
        }

    def _run(self, document: steps.TransitionDocument) -> steps.Step:
        keys_ = self._transition_keys(document["call_id"], document["token"])
        return steps.Step(self._transition(keys_, document))

    def answer(self, call_id: str, report: SendingReport) -> str:
        """Record OVH's answer on the attempt (allowed to anyone: it is evidence), and mark the SMS
        it names as this call's; the attempt's state, or ''."""
        refs = self._transition.refs()
        document: steps.TransitionDocument = {
            "op": "answer",
            "call_id": call_id,
            "token": "",
            "worker": "",
            "report": scripts.json_text(report),
            "owned": [{"key": refs(keys.sms(ovh_id)), "id": ovh_id} for ovh_id in report.get("ids") or []],
            "owned_ttl_s": self.timing.owned_ttl_s,
        }
        return self._transition(self._transition_keys(call_id, ""), document, refs)

    def release(self, owner: Owner, attempt: Attempt) -> int:
        """Give back an attempt whose call did not leave: its receivers go back to their buffer."""
        return self._release(
            {
                "attempt": keys.attempt(attempt.call_id),
                "lease": keys.lease(owner.token),
                "inflight": keys.INFLIGHT,
                **self._buffer_keys(attempt.batch_key, attempt.lane),
            },
            {
                "call_id": attempt.call_id,
                "token": owner.token,
                "worker": owner.worker,
                "tombstone_ttl_s": self.timing.tombstone_ttl_s,
            },
        )

    def settle(
        self, attempt: Attempt, outcome: Outcome, *, owner: Owner | None, look: Look | None = None
    ) -> steps.SettleReply:
        """Apply ``outcome``: ``owner`` for the holder's own settlement; else a reconciler's, whose
        ``look`` says what it saw (the token of its step, the in-flight attempts it read)."""
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
        owned: list[steps.OwnedSms] = [
            {"key": refs(keys.sms(fragment["ovh_id"])), "id": fragment["ovh_id"]}
            for s in outcome.settlements
            for fragment in s.outcomes
            if fragment["status"] == "sent" and "ovh_id" in fragment
        ]
        tracking: list[steps.SettleTracking] = []
        if self.tracking_ttl_s > 0:
            tracking = [
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
            "token": owner.token if owner is not None else (look.token if look is not None else ""),
            "worker": owner.worker if owner else "",
            "result_ttl_s": self.result_ttl_s,
            "request_ttl_s": self.request_ttl_s,
            "queue_cap": self.queue_cap,
            "result_actor": RESULT_ACTOR_NAME,
            "tombstone_ttl_s": self.timing.tombstone_ttl_s,
            "settlements": settlements,
            "events": events,
            "owned": owned,
            "owned_ttl_s": self.timing.owned_ttl_s,
            "proof": attempt.meta.proof,
            "found": sorted({o["receiver"] for s in outcome.settlements for o in s.outcomes if o["status"] == "sent"}),
            "listed_at": look.listed_at if look is not None else 0,
            "others": [{"id": c, "key": refs(keys.attempt(c))} for c in look.in_flight] if look is not None else [],
            "rivals": list(look.rivals) if look is not None else [],
            "tracking_ttl_s": self.tracking_ttl_s,
            "tracking": tracking,
            "pull_cap": self.pull_cap,
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
        # -- consumption per day, user, tag and sender (lua/_usage.lua, worker.accounting.usage) --
        if self.usage is not None:
            usage = self.usage.document(
                refs,
                service=attempt.service,
                login=attempt.login,
                tag=attempt.meta.tag,
                sender=attempt.meta.body.get("sender"),
                sms=sum(s.n_sent for s in outcome.settlements),
                credits=sum(s.credits for s in outcome.settlements),
                unknown=sum(s.n_unknown for s in outcome.settlements),
                called_at_s=attempt.called_at_ms / 1000 if attempt.called_at_ms else None,
            )
            if usage is not None:
                document["usage"] = usage
        fixed: steps.SettleKeys = {
            "attempt": keys.attempt(attempt.call_id),
            "lease": keys.lease(owner.token if owner else ""),
            "inflight": keys.INFLIGHT,
            "reconcile": keys.RECONCILE,
            "stats": keys.STATS,
            **self._buffer_keys(attempt.batch_key, attempt.lane),
            "pull": keys.PULL,
            "receipts": keys.RECEIPTS,
            "receipts_order": keys.RECEIPTS_ORDER,
        }
        return self._settle(fixed, document, refs)

    # -- the lease sweep ------------------------------------------------------------------------

    def held(self) -> list[Held]:
        """Every claimed or calling attempt."""
        call_ids = [scripts.text(c) for c in self.redis.zrange(keys.INFLIGHT, 0, -1)]
        with self.redis.pipeline(transaction=False) as pipe:
            for call_id in call_ids:
                pipe.hmget(keys.attempt(call_id), "owner", "batch_key", "lane", "stale_at", "state")
            rows = pipe.execute()
        held = []
        for call_id, (owner, batch_key, lane, stale_at, state) in zip(call_ids, rows, strict=True):
            if owner is None or state not in (b"claimed", b"calling", "claimed", "calling"):
                # gone (settled meanwhile, or expired): drop it from the index
                self.redis.zrem(keys.INFLIGHT, call_id)
                continue
            stale = int(stale_at) if stale_at is not None else NEVER_STALE  # claimed by an older version
            held.append(Held(call_id, scripts.text(owner), scripts.text(batch_key), scripts.text(lane), stale))
        return held

    def sweep(self, reason: str) -> list[tuple[str, str]]:
        """Take over every attempt whose owner's lease expired, or that made no progress past its
        stale time (its owner lost track of it); ``(call_id, what happened)`` each."""
        held = self.held()
        owners = sorted({h.owner for h in held})
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for owner in owners:
                pipe.exists(keys.lease(owner))
            seconds_micros, *lives = pipe.execute()
        now_ms = int(seconds_micros[0]) * 1000 + int(seconds_micros[1]) // 1000
        alive = dict(zip(owners, lives, strict=True))
        done = []
        for h in held:
            if alive[h.owner] and now_ms < h.stale_at_ms:
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
                    "grace_ms": self.timing.grace_ms,
                    "deadline_ms": self.timing.deadline_ms,
                    "reason": reason if not alive[h.owner] else STALLED_REASON,
                    "tombstone_ttl_s": self.timing.tombstone_ttl_s,
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
        if raw.get("state") not in ("claimed", "calling", "ambiguous"):  # gone, or a tombstone
            return None
        return Attempt(
            call_id=call_id,
            lane=raw["lane"],
            batch_key=raw["batch_key"],
            meta=CallMeta.decode(raw["meta"]),
            entries=[Entry.decode(line) for line in raw["entries"].split("\n") if line],
            called_at_ms=int(raw.get("called_at") or 0),
            try_ms=int(raw.get("try_ms") or 0),
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
