"""Batch buffers in Redis: where accepted receivers wait to share a jobs call.

A *batch key* names everything that must be identical for receivers to go out in one
``POST .../jobs`` call (service, OVH user login, exact text, sender and OVH options, lane).
Each key has a buffer (a list of entries), the call body it will send, and a place in its lane's
*due* set, scored by when it must go: at once when it is full or its lane has no linger, else
when its oldest entry has waited the lane's linger.

The three steps that must not interleave are Lua scripts (``worker/store/lua/``), so any number of
threads and replicas share the buffers safely: ``stage`` (dedupe + quota reservation + stage),
``claim`` (take up to one call's receivers, record the attempt) and ``settle`` (outcomes, quota
settlement, results, publication).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from contracts.wire import DRAMATIQ_NAMESPACE, RESULT_ACTOR_NAME, RESULT_KEY_PREFIX, accept_actor_name, lane_queue

from ..store import keys, scripts

assert RESULT_KEY_PREFIX == keys.PREFIX + "result:", "the Lua scripts write results under keys.PREFIX"


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Entry:
    """One receiver of one request, waiting in a buffer."""

    arrival_ms: int
    request_id: str
    receiver: str
    credits: float

    def encode(self) -> str:
        return f"{self.arrival_ms}|{self.request_id}|{self.receiver}|{self.credits!r}"

    @classmethod
    def decode(cls, raw: bytes | str) -> Entry:
        arrival, request_id, receiver, credits = _text(raw).split("|")
        return cls(int(arrival), request_id, receiver, float(credits))


@dataclass(frozen=True, slots=True)
class Batch:
    """Receivers of one request that share a batch key."""

    lane: str
    meta: dict[str, Any]  # {"service", "login", "lane", "body": jobs call body without receivers}
    entries: list[Entry]


def meta_json(meta: dict[str, Any]) -> str:
    """A batch's meta as canonical JSON: what is stored for the call, and what its key hashes."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))


def batch_key(canonical_meta: str) -> str:
    return hashlib.sha1(canonical_meta.encode()).hexdigest()


#: Lane of the alert SMS a quota crossing sends (it is urgent and tiny).
ALERT_SMS_LANE = "high"


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
    skeleton: dict[str, Any]
    reply_to: str
    invalid_outcomes: list[dict[str, Any]]
    batches: list[Batch]
    quota: QuotaRequest | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """Receivers taken from one buffer for one OVH call; recorded as an attempt in Redis."""

    call_id: str
    lane: str
    meta: dict[str, Any]
    reply_tos: dict[str, str]  # request id -> results queue
    entries: list[Entry]


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one call did for one request."""

    request_id: str
    n_in_call: int
    n_sent: int = 0
    n_failed: int = 0
    n_unknown: int = 0
    credits: float = 0.0  # OVH's share of totalCreditsRemoved
    outcomes: tuple[dict[str, Any], ...] = ()
    error: dict[str, Any] | None = None
    reserved: float = 0.0  # estimated credits of the request's receivers in this call (released from the quota)
    unconfirmed: float = 0.0  # of those, the ones of unknown outcome: counted as spent, never refunded

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
    timestamp_ms: int


def _stage_batch(batch: Batch) -> dict[str, Any]:
    meta = meta_json(batch.meta)  # encoded once: stored as is, and hashed into the batch key
    return {
        "key": batch_key(meta),
        "lane": batch.lane,
        "meta": meta,
        "entries": [entry.encode() for entry in batch.entries],
    }


def _fragments(items: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> str:
    return ",".join(json.dumps(item, separators=(",", ":")) for item in items)


class BatchBuffer:
    def __init__(
        self,
        client: redis.Redis,
        *,
        max_receivers_per_call: int,
        dedupe_ttl_s: int,
        result_ttl_s: int,
        namespace: str = DRAMATIQ_NAMESPACE,
    ) -> None:
        self.redis = client
        self.max_receivers_per_call = max_receivers_per_call
        self.dedupe_ttl_s = dedupe_ttl_s
        self.result_ttl_s = result_ttl_s
        self.namespace = namespace
        self._stage = scripts.load(client, "stage", publishes=True)
        self._claim = scripts.load(client, "claim", publishes=True)
        self._settle = scripts.load(client, "settle", publishes=True)
        self._reject = scripts.load(client, "reject", publishes=True)
        self._requeue = scripts.load(client, "requeue", publishes=True)

    def stage_many(self, stagings: list[Staging], *, linger_ms: dict[str, int]) -> list[str]:
        """``stage`` for several requests in one round trip (each request still its own atomic step)."""
        if not stagings:
            return []
        document = {
            "prefix": keys.PREFIX,
            "now_ms": now_ms(),
            "dedupe_ttl_s": self.dedupe_ttl_s,
            "max_per_call": self.max_receivers_per_call,
            "namespace": self.namespace,
            "result_ttl_s": self.result_ttl_s,
            "result_actor": RESULT_ACTOR_NAME,
            "alert_sms_queue": lane_queue(ALERT_SMS_LANE),
            "alert_sms_actor": accept_actor_name(ALERT_SMS_LANE),
            "linger": linger_ms,
            "requests": [self._stage_request(staging) for staging in stagings],
        }
        codes = self._stage(args=[json.dumps(document, separators=(",", ":"))])
        return [{0: "duplicate", 1: "staged", 2: "quota_exceeded"}[int(code)] for code in codes]

    @staticmethod
    def _stage_request(staging: Staging) -> dict[str, Any]:
        request: dict[str, Any] = {
            "id": staging.request_id,
            "skeleton": json.dumps(staging.skeleton, separators=(",", ":")),
            "reply_to": staging.reply_to,
            "invalid": _fragments(staging.invalid_outcomes),
            "n_invalid": len(staging.invalid_outcomes),
            "n_valid": sum(len(b.entries) for b in staging.batches),
            "credits": sum(e.credits for b in staging.batches for e in b.entries),
            "batches": [_stage_batch(batch) for batch in staging.batches],
        }
        quota = staging.quota
        if quota is not None and quota.login:
            request["quota"] = {
                "service": quota.service,
                "login": quota.login,
                "alert_queue": quota.alert_queue or staging.reply_to,
                "alert_sms": quota.alert_sms,
                "alert_sms_template": quota.alert_sms_template,
            }
        return request

    def dead_letter(self, queue: str, message_json: str, message_id: str) -> None:
        """Put one message into ``queue``'s dead-letter queue, as dramatiq's nack would."""
        self.redis.hset(f"{self.namespace}:{queue}.XQ.msgs", message_id, message_json)
        self.redis.zadd(f"{self.namespace}:{queue}.XQ", {message_id: now_ms()})

    def reject(self, request_id: str, result_json: str, reply_to: str, message_id: str) -> bool:
        """Publish the result of a request refused before staging; ``False`` for a repeat."""
        args = [
            keys.PREFIX,
            request_id,
            now_ms(),
            self.dedupe_ttl_s,
            result_json,
            self.result_ttl_s,
            self.namespace,
            reply_to,
            message_id,
            RESULT_ACTOR_NAME,
        ]
        return bool(self._reject(keys=[keys.seen(request_id)], args=args))

    def claim(self, lanes: list[tuple[str, int]], call_id: str, worker_id: str) -> Claim | int:
        """Take the next due batch, highest lane first; else the next due time (ms, or -1)."""
        args: list[Any] = [keys.PREFIX, now_ms(), self.max_receivers_per_call, call_id, worker_id, len(lanes)]
        for lane, linger in lanes:
            args += [lane, linger]
        reply = self._claim(args=args)
        if not reply[0]:
            return int(reply[1])
        return Claim(
            call_id=reply[0].decode(),
            lane=reply[1].decode(),
            meta=json.loads(reply[2]),
            reply_tos=json.loads(reply[3]),
            entries=[Entry.decode(raw) for raw in reply[4:]],
        )

    def mark_called(self, call_id: str) -> None:
        """Note that the call is about to leave: from now on a crash leaves it ambiguous."""
        self.redis.hset(keys.attempt(call_id), "called", 1)

    def settle(
        self,
        call_id: str,
        settlements: list[Settlement],
        events: list[Event],
        message_ids: list[str],
        *,
        quota: tuple[str, str | None] | None = None,
        tracking: Sequence[dict[str, Any]] = (),
        tracking_ttl_s: int = 0,
    ) -> list[str] | None:
        """Apply a call's outcomes and settle its credits on the user's quota (``quota`` is
        ``(service, login)`` of the call); returns the statuses of the results published, or
        ``None`` if the call was already settled.

        ``tracking``: one record per SMS OVH accepted (see ``keys.SMS``), kept ``tracking_ttl_s``."""
        timestamp = now_ms()
        service, login = quota or ("", None)
        args: list[Any] = [
            keys.PREFIX,
            call_id,
            repr(time.time()),
            self.result_ttl_s,
            self.namespace,
            RESULT_ACTOR_NAME,
            keys.quota(service, login) if login else "",
            len(settlements),
        ]
        for settlement, message_id in zip(settlements, message_ids, strict=True):
            args += [
                settlement.request_id,
                settlement.n_in_call,
                settlement.n_sent,
                settlement.n_failed,
                settlement.n_unknown,
                repr(settlement.credits),
                _fragments(settlement.outcomes),
                "" if settlement.error is None else json.dumps(settlement.error, separators=(",", ":")),
                message_id,
                timestamp,
                repr(settlement.reserved),
                repr(settlement.spent),
            ]
        args.append(len(events))
        for event in events:
            args += [event.queue, event.message_id, event.payload, event.timestamp_ms]
        args.append(json.dumps({"ttl": tracking_ttl_s, "records": list(tracking)}, separators=(",", ":")))
        reply = self._settle(args=args)
        return None if reply == -1 else [_text(status) for status in reply]

    def wait_for_work(self, timeout_s: float) -> None:
        """Block until a buffer becomes due now (or the timeout passes)."""
        self.redis.blpop([keys.WAKE], timeout=max(timeout_s, 0.001))

    def stale_attempts(self, older_than_ms: int) -> list[str]:
        """Attempts started more than ``older_than_ms`` ago and never settled."""
        cutoff = now_ms() - older_than_ms
        return [_text(raw) for raw in self.redis.zrangebyscore(keys.ATTEMPTS, "-inf", cutoff)]

    def attempt(self, call_id: str) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in self.redis.hgetall(keys.attempt(call_id)).items()}

    def reply_tos(self, request_ids: set[str]) -> dict[str, str]:
        """Results queue of each request still in flight (as ``claim.lua`` returns them)."""
        ordered = sorted(request_ids)
        with self.redis.pipeline(transaction=False) as pipe:
            for request_id in ordered:
                pipe.hget(keys.request(request_id), "reply_to")
            queues = pipe.execute()
        return {rid: _text(queue) for rid, queue in zip(ordered, queues, strict=True) if queue is not None}

    def requeue(self, call_id: str) -> int:
        """Give back an attempt's receivers if its call never left; -1 if it was called (or is gone)."""
        return int(self._requeue(args=[keys.PREFIX, call_id, now_ms()]))
