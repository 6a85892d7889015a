"""Batch buffers in Redis: where accepted receivers wait to share a jobs call.

A *batch key* names everything that must be identical for receivers to go out in one
``POST .../jobs`` call (service, OVH user login, exact text, sender and OVH options, lane).
Each key has a buffer (a list of entries), the call body it will send, and a place in its lane's
*due* set, scored by when it must go: at once when it is full or its lane has no linger, else
when its oldest entry has waited the lane's linger. Accept stages into buffers (``stage.lua``:
dedupe + quota reservation + staging, one atomic step per request); dispatchers ``peek`` for the
next due buffer, take a rate-limit slot, then claim from it (``worker.attempts.lifecycle``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

import redis

from contracts.redis_connection import text
from contracts.wire import RESULT_ACTOR_NAME, accept_actor_name, lane_queue
from worker.accounting.credits import STOP_MENTION
from worker.ovhcloud.jobs import JobBody
from worker.quiet_hours import QuietHours
from worker.settings import Settings
from worker.store import keys, scripts

#: A buffer still filling is due a linger after its newest entry, and at most this many lingers
#: after its oldest: a steady stream of identical sends goes out in whole calls, a lull at once.
LINGER_CAP = 10

#: Commercial buffers ``peek`` moves past the quiet hours in one look at most (then it answers
#: "nothing due before the window's end"; the next look goes on).
PEEK_SKIPS = 100

#: Lane of the alert SMS a quota crossing sends (it is urgent and tiny).
ALERT_SMS_LANE = "high"


@dataclass(frozen=True, slots=True)
class Entry:
    """One receiver of one request, waiting in a buffer or held by an attempt.

    Encoded ``<arrival ms>|<request id>|<E.164>|<credits>|<reply_to>`` (``reply_to`` empty for
    the default results queue): none of these can contain ``|``.
    """

    arrival_ms: int
    request_id: str
    receiver: str
    credits: float
    reply_to: str = ""

    def encode(self) -> str:
        return f"{self.arrival_ms}|{self.staged()}"

    def staged(self) -> str:
        """The entry without its arrival time (``stage.lua`` prefixes Redis' clock)."""
        return f"{self.request_id}|{self.receiver}|{self.credits!r}|{self.reply_to}"

    @classmethod
    def decode(cls, raw: bytes | str) -> Entry:
        arrival, request_id, receiver, credits, reply_to = text(raw).split("|")
        return cls(int(arrival), request_id, receiver, float(credits), reply_to)


def stored_text(body: JobBody) -> str:
    """The text OVH keeps in its records for an SMS of this call: the message, and the STOP
    mention OVH appends to a commercial one (``noStopClause`` false)."""
    return body["message"] if body["noStopClause"] else body["message"] + STOP_MENTION


def proof_key(service: str, body: JobBody) -> str:
    """What OVH's records tell apart: two calls with the same proof key and receiver leave SMS
    that look alike in ``GET /sms/{sn}/outgoing`` (same account, stored text, sender and tag,
    whatever the user, lane or priority), so reconciliation counts them against each other."""
    parts = (service, stored_text(body), body.get("sender") or "", body.get("tag") or "")
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class CallMeta:
    """What the receivers of one batch key share: the OVH account and user the call goes
    through, its lane, the jobs call body without receivers, and its proof key (``proof_key``).
    Stored as canonical JSON with the buffer and the attempt (``keys.buffer_meta``, the attempt's
    ``meta``; ``settle.lua`` reads ``proof``), read back here only."""

    service: str
    login: str | None
    lane: str
    body: JobBody
    proof: str
    hold_until_ms: int = 0  # held by the worker until then (the quiet hours): never shares a key with sends due now

    def encode(self) -> str:
        """Canonical JSON (sorted keys): equal metas encode equal, so they share a batch key."""
        value: dict[str, Any] = {
            "service": self.service,
            "login": self.login,
            "lane": self.lane,
            "body": self.body,
            "proof": self.proof,
        }
        if self.hold_until_ms:
            value["hold_until_ms"] = self.hold_until_ms
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: bytes | str) -> CallMeta:
        value = json.loads(raw)
        body: JobBody = value["body"]
        proof = value.get("proof") or proof_key(value["service"], body)  # staged by an older version
        return cls(
            service=value["service"],
            login=value["login"],
            lane=value["lane"],
            body=body,
            proof=proof,
            hold_until_ms=int(value.get("hold_until_ms") or 0),
        )

    @property
    def tag(self) -> str | None:
        return self.body.get("tag")

    @property
    def text(self) -> str:
        """The text OVH keeps in its records for the call's SMS."""
        return stored_text(self.body)


@dataclass(frozen=True, slots=True)
class Meta:
    """A ``CallMeta`` with its canonical JSON and batch key, computed once (``encode_meta``)."""

    value: CallMeta
    json: str  # canonical JSON: stored for the call, hashed into the key
    key: str  # the batch key


@functools.lru_cache(maxsize=4096)  # a broadcast repeats one meta: encode it once, not per request
def _encode(service: str, login: str | None, lane: str, body: tuple[tuple[str, Any], ...], hold_ms: int = 0) -> Meta:
    job: JobBody = dict(body)  # type: ignore[assignment]  # a JobBody's items
    value = CallMeta(service, login, lane, job, proof_key(service, job), hold_ms)
    canonical = value.encode()
    return Meta(value, canonical, hashlib.sha1(canonical.encode()).hexdigest())


def encode_meta(service: str, login: str | None, lane: str, body: JobBody, *, hold_ms: int = 0) -> Meta:
    """The batch meta of a jobs call body (receivers left out), with its JSON and batch key;
    ``hold_ms``: held by the worker until then (Redis ms, the quiet hours), a key of its own."""
    return _encode(service, login, lane, tuple(sorted(body.items())), hold_ms)


class Fragment(TypedDict):
    """What became of one receiver, as it goes into a result's ``receivers`` (``ReceiverOutcome``)."""

    receiver: str
    status: str  # sent, invalid, failed, unknown, blacklisted
    ovh_id: NotRequired[int]
    reason: NotRequired[str]


class Skeleton(TypedDict):
    """A ``SendResult`` without what settlement adds (status, credits, receivers, finished_at)."""

    kind: str
    version: int
    request_id: str
    service_name: str
    accepted_at: float
    user: NotRequired[str]
    tag: NotRequired[str]
    metadata: NotRequired[dict[str, object]]
    deferred_until: NotRequired[float]  # unix s: held by the worker for the quiet hours until then


@dataclass(frozen=True, slots=True)
class Batch:
    """Receivers of one request that share a batch key."""

    lane: str
    meta: Meta
    entries: list[Entry]
    not_before_ms: int = 0  # held by the worker until then (unix ms): the quiet hours of commercial sends


@dataclass(frozen=True, slots=True)
class QuotaRequest:
    """What the stage step needs to reserve credits on a user's quota, and to alert."""

    service: str
    login: str
    alert_queue: str | None = None  # QuotaAlert destination; default: the request's reply_to
    alert_sms: bool = False  # send the alert SMS when the user has an alert number
    alert_sms_template: str = ""  # placeholders {user}, {service}, {quota_left}, {threshold}


@dataclass(frozen=True, slots=True)
class Staging:
    """One request ready for the stage step."""

    request_id: str
    skeleton: Skeleton
    reply_to: str
    invalid_outcomes: list[Fragment]
    batches: list[Batch]
    quota: QuotaRequest | None = None

    @property
    def credits(self) -> float:
        return sum(entry.credits for batch in self.batches for entry in batch.entries)


# -- the scripts (lua/): their keys, documents and replies -------------------------------------


class StageKeys(TypedDict):
    stats: str
    quotas: str


class StageBatch(TypedDict):
    key: str  # the batch key
    lane: str
    buf: int  # key indexes
    bufmeta: int
    due: int
    wake: int
    not_before: int  # Redis ms the batch is held until (the quiet hours); 0: not held
    entries: list[str]  # Entry.staged()


class StageQuota(TypedDict):
    key: int
    service: str
    login: str
    alert_queue: str
    alert_q: int
    alert_msgs: int
    alert_sms: bool
    alert_sms_template: str
    sms_q: int
    sms_msgs: int


class StageRequest(TypedDict):
    id: str
    seen: int
    req: int
    outcomes: int
    result: int  # cleared when a request refused for a transient cause is sent again
    ready: int
    skeleton: str  # JSON
    reply_to: str
    invalid: str  # Fragment JSON objects joined by ","
    n_invalid: int
    n_valid: int
    credits: float
    batches: list[StageBatch]
    quota: NotRequired[StageQuota]


class StageDocument(TypedDict):
    token: str  # this stage call's (sent again after a lost reply: "staged" again)
    delivery: str  # the queue message's delivery (a redelivery is not a resend)
    dedupe_ttl_s: int
    request_ttl_s: int
    max_per_call: int
    linger: dict[str, int]
    linger_cap: int
    queue_cap: int
    result_actor: str
    alert_sms_queue: str
    alert_sms_actor: str
    requests: list[StageRequest]
    metas: dict[str, str]  # batch key -> meta JSON, once per pack


class _Stage(scripts.Script[StageKeys, StageDocument, list[str]]):
    """``staged``, ``duplicate`` or ``quota:<credits left>`` for each request."""

    NAME = "stage"
    Keys = StageKeys

    def reply(self, raw: Any) -> list[str]:
        return [scripts.text(r) for r in raw]


class RejectKeys(TypedDict):
    seen: str
    result: str
    ready: str
    queue: str
    messages: str
    stats: str


class CampaignRejected(TypedDict):
    key: int
    service: str
    tag: str
    ttl_s: int


class RejectDocument(TypedDict):
    id: str
    token: str
    delivery: str
    transient: bool  # not the request's own fault: the same id may be sent again
    dedupe_ttl_s: int
    result: str  # the SendResult JSON
    result_ttl_s: int
    queue: str
    message_id: str
    actor: str
    queue_cap: int
    campaign: NotRequired[CampaignRejected]


class _Reject(scripts.Script[RejectKeys, RejectDocument, bool]):
    """``True`` when published, ``False`` for a repeat."""

    NAME = "reject"
    PRELUDE = scripts.CAMPAIGN_PRELUDE
    Keys = RejectKeys

    def reply(self, raw: Any) -> bool:
        return bool(raw)


class PeekKeys(TypedDict):
    pass


class PeekDocument(TypedDict):
    dues: list[int]  # key indexes: the due set of each lane, highest priority first


@dataclass(frozen=True, slots=True)
class Due:
    """The buffer to send next."""

    lane: str
    batch_key: str


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing due now; ``next_due_ms``: when the next buffer is due (Redis ms), ``None``: none at all."""

    next_due_ms: int | None


class _Peek(scripts.Script[PeekKeys, PeekDocument, tuple[int, str]]):
    """``(lane index from 1, batch key)``, or ``(0, next due ms or -1)``."""

    NAME = "peek"
    Keys = PeekKeys

    def reply(self, raw: Any) -> tuple[int, str]:
        return int(raw[0]), scripts.text(raw[1])


class Buffers:
    """Staging into batch buffers, and the dispatchers' look at what is due.

    ``dedupe_ttl_s``, ``result_ttl_s``, ``request_ttl_s``: how long a request id, a result and a
    request in flight are kept (seconds); ``queue_cap``: events a results queue holds at most (0:
    no cap); ``campaign_stats_ttl_s``: how long a tag's campaign statistics live (0: not kept).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        max_receivers_per_call: int,
        dedupe_ttl_s: int,
        result_ttl_s: int,
        request_ttl_s: int,
        queue_cap: int,
        campaign_stats_ttl_s: int = 0,
        quiet: QuietHours | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = client
        self.quiet = quiet
        self.clock = clock
        self.campaign_stats_ttl_s = campaign_stats_ttl_s
        self.max_receivers_per_call = max_receivers_per_call
        self.dedupe_ttl_s = dedupe_ttl_s
        self.result_ttl_s = result_ttl_s
        self.request_ttl_s = request_ttl_s
        self.queue_cap = queue_cap
        self._stage = _Stage(client)
        self._reject = _Reject(client)
        self._peek = _Peek(client)

    @classmethod
    def from_settings(
        cls, client: redis.Redis, settings: Settings, *, clock: Callable[[], float] = time.time
    ) -> Buffers:
        """The buffers as ``settings`` configure them (every process builds them this way);
        ``clock``: the wall clock the quiet hours are read with (a seam for tests)."""
        return cls(
            client,
            max_receivers_per_call=settings.max_receivers_per_call,
            dedupe_ttl_s=settings.dedupe_ttl_s,
            result_ttl_s=settings.result_ttl_s,
            request_ttl_s=settings.request_ttl_s,
            queue_cap=settings.results_queue_max_length,
            campaign_stats_ttl_s=settings.campaign_stats_ttl_s,
            quiet=settings.quiet_hours(),
            clock=clock,
        )

    def stage_many(self, stagings: list[Staging], *, linger_ms: dict[str, int], delivery: str = "") -> list[str]:
        """Stage several requests in one round trip (each request its own atomic step).

        One reply per request: ``staged``, ``duplicate`` or ``quota:<credits left>`` (refused by
        its user's quota; nothing changed: the caller publishes the rejection). ``delivery``
        names the queue message they came in (a redelivery of it is not a resend). Each call is
        tokened: run again with the same arguments (its reply lost), it answers the same.
        """
        if not stagings:
            return []
        refs = self._stage.refs()
        document: StageDocument = {
            "token": uuid.uuid4().hex,
            "delivery": delivery or uuid.uuid4().hex,
            "dedupe_ttl_s": self.dedupe_ttl_s,
            "request_ttl_s": self.request_ttl_s,
            "max_per_call": self.max_receivers_per_call,
            "linger": linger_ms,
            "linger_cap": LINGER_CAP,
            "queue_cap": self.queue_cap,
            "result_actor": RESULT_ACTOR_NAME,
            "alert_sms_queue": lane_queue(ALERT_SMS_LANE),
            "alert_sms_actor": accept_actor_name(ALERT_SMS_LANE),
            "requests": [self._stage_request(staging, refs) for staging in stagings],
            # each batch's meta once, by batch key: a broadcast pack shares one
            "metas": {b.meta.key: b.meta.json for staging in stagings for b in staging.batches},
        }
        return self._stage({"stats": keys.STATS, "quotas": keys.QUOTAS}, document, refs)

    @staticmethod
    def _stage_request(staging: Staging, refs: scripts.KeyRefs) -> StageRequest:
        rid = staging.request_id
        request: StageRequest = {
            "id": rid,
            "seen": refs(keys.seen(rid)),
            "req": refs(keys.request(rid)),
            "outcomes": refs(keys.outcomes(rid)),
            "result": refs(keys.result(rid)),
            "ready": refs(keys.result_ready(rid)),
            "skeleton": scripts.json_text(staging.skeleton),
            "reply_to": staging.reply_to,
            "invalid": ",".join(scripts.json_text(o) for o in staging.invalid_outcomes),
            "n_invalid": len(staging.invalid_outcomes),
            "n_valid": sum(len(b.entries) for b in staging.batches),
            "credits": staging.credits,
            "batches": [],
        }
        for batch in staging.batches:
            key = batch.meta.key
            request["batches"].append(
                {
                    "key": key,
                    "lane": batch.lane,
                    "buf": refs(keys.buffer(key)),
                    "bufmeta": refs(keys.buffer_meta(key)),
                    "due": refs(keys.due(batch.lane)),
                    "wake": refs(keys.wake(batch.lane)),
                    "not_before": batch.not_before_ms,
                    "entries": [entry.staged() for entry in batch.entries],
                }
            )
        quota = staging.quota
        if quota is not None and quota.login:
            alert_queue = quota.alert_queue or staging.reply_to
            alert_sms_queue = lane_queue(ALERT_SMS_LANE)
            request["quota"] = {
                "key": refs(keys.quota(quota.service, quota.login)),
                "service": quota.service,
                "login": quota.login,
                "alert_queue": alert_queue,
                "alert_q": refs(keys.queue(alert_queue)),
                "alert_msgs": refs(keys.queue_messages(alert_queue)),
                "alert_sms": quota.alert_sms,
                "alert_sms_template": quota.alert_sms_template,
                "sms_q": refs(keys.queue(alert_sms_queue)),
                "sms_msgs": refs(keys.queue_messages(alert_sms_queue)),
            }
        return request

    def reject(
        self,
        request_id: str,
        result_json: str,
        reply_to: str,
        *,
        service: str | None = None,
        tag: str | None = None,
        transient: bool = False,
        delivery: str = "",
    ) -> bool:
        """Publish the result of a request refused before staging; ``False`` for a repeat.

        ``transient``: refused for a cause that is not the request's own (``delivery`` names the
        queue message): the same id may be sent again. A tagged request is counted ``rejected``
        in its campaign's statistics (same step)."""
        refs = self._reject.refs()
        document: RejectDocument = {
            "id": request_id,
            "token": uuid.uuid4().hex,
            "delivery": delivery or uuid.uuid4().hex,
            "transient": transient,
            "dedupe_ttl_s": self.dedupe_ttl_s,
            "result": result_json,
            "result_ttl_s": self.result_ttl_s,
            "queue": reply_to,
            "message_id": f"result:{request_id}",
            "actor": RESULT_ACTOR_NAME,
            "queue_cap": self.queue_cap,
        }
        fixed: RejectKeys = {
            "seen": keys.seen(request_id),
            "result": keys.result(request_id),
            "ready": keys.result_ready(request_id),
            "queue": keys.queue(reply_to),
            "messages": keys.queue_messages(reply_to),
            "stats": keys.STATS,
        }
        if service and tag and self.campaign_stats_ttl_s > 0:
            document["campaign"] = {
                "key": refs(keys.campaign_stats(service, tag)),
                "service": service,
                "tag": tag,
                "ttl_s": self.campaign_stats_ttl_s,
            }
        return self._reject(fixed, document, refs)

    def peek(self, lanes: list[str]) -> Due | Idle:
        """The buffer to send next (highest lane first, most overdue first), or when one is due.

        In the quiet hours, a due commercial buffer (staged before they began, and waiting for a
        rate-limit slot since: a requests-mode campaign) is not sent: it is due again at the
        next allowed time, and the next buffer is looked at. Outside them this costs nothing.
        """
        held_ms = 0  # in Redis' time base
        if self.quiet is not None:
            now = self.clock()
            held = self.quiet.held_until(datetime.fromtimestamp(now, UTC), commercial=True)
            held_ms = int((time.time() + held.timestamp() - now) * 1000) if held is not None else 0
        for _ in range(PEEK_SKIPS):
            refs = self._peek.refs()
            index, value = self._peek({}, {"dues": [refs(keys.due(lane)) for lane in lanes]}, refs)
            if index == 0:
                next_due = int(value)
                return Idle(None if next_due < 0 else next_due)
            lane = lanes[index - 1]
            if not held_ms:
                return Due(lane, value)
            meta = self.redis.get(keys.buffer_meta(value))
            if meta is None or CallMeta.decode(meta).body.get("noStopClause", False):
                return Due(lane, value)
            self.redis.zadd(keys.due(lane), {value: held_ms}, xx=True)
        return Idle(held_ms)

    def wait_for_work(self, lanes: list[str], timeout_s: float) -> None:
        """Block until a buffer of one of ``lanes`` becomes due (or the timeout passes).

        One wake-up list per lane, listed highest lane first: a dispatcher serving only bulk
        lanes never takes the wake-up meant for the high lane's dispatchers.
        """
        self.redis.blpop([keys.wake(lane) for lane in lanes], timeout=max(timeout_s, 0.01))

    def wake(self, lanes: list[str], times: int) -> None:
        """End ``times`` blocking waits on each of ``lanes`` (a stopping process wakes its
        dispatchers; another process woken as well just looks at its buffers once more)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for lane in lanes:
                pipe.lpush(keys.wake(lane), *([1] * times))
                pipe.ltrim(keys.wake(lane), 0, 15 + times)
            pipe.execute()

    def staged_receivers(self, lane: str) -> int:
        """Receivers waiting in the buffers of ``lane`` (a gauge: one LLEN per buffer)."""
        batch_keys: list[bytes] = self.redis.zrange(keys.due(lane), 0, -1)  # type: ignore[assignment]
        with self.redis.pipeline(transaction=False) as pipe:
            for key in batch_keys:
                pipe.llen(keys.buffer(scripts.text(key)))
            return sum(pipe.execute())
