"""The rate limiter of OVH calls: one token bucket per consumer key, in Redis, for every replica.

OVH's fair use is about 60 calls a minute per consumer key, and every thread of every replica
calls with the same key, so the budget lives in Redis and is taken by one Lua script
(``lua/rate_limit.lua``) that reads the clock of the Redis server, never the caller's.

The bucket holds at most ``burst + headroom`` calls' worth and refills at ``rate_per_s`` (the
rate in force: 429s lower it, successes bring it back). The top lane (``high``, one-time codes)
takes a call while the bucket holds one; every other lane takes one only while the bucket holds
``headroom`` *plus* one, so the others never leave less than ``headroom`` behind. A code then
finds its call's worth in the bucket, or most of it, even while a campaign takes every other
slot: it does not wait a whole slot interval behind bulk sends.

Guarantee, in any window of ``T`` seconds (bounds included), for one consumer key and every
thread and process sharing it, times being the Redis server's:

- all lanes together are granted at most ``burst + headroom + rate_per_s * T`` calls;
- every lane but the top one together (bulk lanes, lookups, background reads) at most
  ``burst + rate_per_s * T``;
- the top lane is never kept waiting by the others' grants: if it was granted nothing during the
  last ``s`` seconds and no 429 pause is in force, the bucket holds at least
  ``min(headroom, rate_per_s * s)`` calls' worth, so a lone top-lane call whose lane took nothing
  during the last ``headroom / rate_per_s`` seconds waits at most ``(1 - headroom) / rate_per_s``
  (not at all when ``headroom >= 1``), however many bulk calls wait.

With the defaults (rate 1/s, burst 1, headroom 0.9): at most ``floor(1.9 + T)`` calls in any
``T`` seconds, so 61 in any minute (as a plain bucket of burst 1 allows) and 2 in any second;
a code whose lane took no slot in the last second waits at most 0.1 s for its own. Refills are
rounded down to the micro-call, so the bounds hold exactly and rounding can only delay a grant
by microseconds. It bounds *grants*: OVH counts *arrivals*, which also carry the variation of
the network and of the caller's own delay between grant and request. A grant given back unused
with ``release`` returns its token.

- Waiting, not failing: ``acquire`` sleeps until the script says the next call slot frees (at
  most ``MAX_SLEEP_S`` at a time) instead of failing the message as dramatiq's limiters do.
- Priority: a waiter registers in its lane's sorted set of live waiters (scored by an expiry it
  renews each time it looks); a lane is granted a slot only while no higher lane has a live
  waiter. A dead waiter stops holding lower lanes back after ``WAITER_TTL_S``. Within a lane,
  the first waiter to look after a slot frees gets it (no FIFO). The lanes, highest first:
  ``high``, ``LOOKUP_LANE`` (OVH reads a request's result waits on: reconciliation of ambiguous
  calls, the first rate of a destination; done in seconds under a saturating campaign, never
  with the codes' headroom), ``medium``, ``low``, ``veryLow``, ``BACKGROUND_LANE``.
- 429: ``on_rate_limited`` cuts the shared rate (times ``decrease_factor``, down to
  ``min_rate_per_s``) at most once per round: a 429 for a call granted before the last cut
  does not cut again. Nothing is granted before ``Retry-After``, and the bucket comes back
  with one call's worth, not a burst. ``on_success`` adds ``increase_per_success`` back, up
  to the configured rate (additive increase). The reduced rate is in Redis: every replica
  slows down together.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import redis

from contracts.wire import LANES
from worker.store import keys, scripts

#: Longest a waiter sleeps before looking again (seconds); also how often it renews its
#: registration, and how late it may notice a slot a higher lane's waiter gave up.
MAX_SLEEP_S = 0.2
#: A waiter that has not looked for this long (seconds) is presumed dead: lower lanes stop
#: yielding to it. Several times ``MAX_SLEEP_S``, so a live but busy waiter keeps its place.
WAITER_TTL_S = 2.0
#: The bucket's state is dropped after this long unused (seconds); a full bucket at the
#: configured rate is what would be there anyway.
STATE_TTL_S = 3600
#: Lowest floor of the rate after 429s (calls per second).
DEFAULT_MIN_RATE_PER_S = 0.1
#: Default floor of the rate after 429s, as a share of the configured rate: a storm of 429s
#: slows every replica to a twentieth of the configured rate (never under DEFAULT_MIN_RATE_PER_S),
#: not to a crawl it would take minutes of rare successes to climb back from.
DEFAULT_FLOOR_SHARE = 1 / 20
#: Default multiplicative decrease on a 429.
DEFAULT_DECREASE_FACTOR = 0.5
#: The limiter's lane below every send lane: delivery-receipt polling, balance and rate refreshes,
#: syncs. It is granted a slot only when no other lane is waiting.
BACKGROUND_LANE = "background"
#: The lane of the OVH reads a request's result waits on (looking an ambiguous call up, reading
#: the rate of a destination nobody priced yet), below ``high`` and above the bulk lanes: done
#: within a few slots even while a campaign wants every one, without taking the codes' headroom.
LOOKUP_LANE = "lookup"
#: Longest a caller waits for a slot before giving up this round (seconds): a dispatcher then
#: looks at the buffers again, a background job tries again next period.
ACQUIRE_TIMEOUT_S = 30.0
#: Every lane the limiter orders, highest priority first.
LIMITER_LANES: tuple[str, ...] = (LANES[0], LOOKUP_LANE, *LANES[1:], BACKGROUND_LANE)
#: The lanes that may take the headroom: one-time codes.
HEADROOM_LANES: tuple[str, ...] = (LANES[0],)


class _Keys(TypedDict):
    state: str  # the bucket's hash


class _Document(TypedDict):
    op: str  # acquire, rate_limited, success, release, state
    rate: float  # the configured rate (calls/s)
    burst: int
    headroom: int  # micro-calls only the headroom lanes may take
    state_ttl_ms: int
    waiters: list[int]  # key indexes: each lane's waiters, highest priority first
    lane: NotRequired[int]  # acquire: the lane's position (1 = highest)
    uses_headroom: NotRequired[bool]  # acquire: whether the lane may take the headroom
    waiter: NotRequired[str]  # acquire: the waiter's id
    waiter_ttl_us: NotRequired[int]  # acquire
    retry_after_us: NotRequired[int]  # rate_limited: -1 if none
    seq: NotRequired[int]  # rate_limited: the caller's grant seq (-1 if unknown)
    floor: NotRequired[float]  # rate_limited: the rate's floor (calls/s)
    factor: NotRequired[float]  # rate_limited: decrease factor
    increase: NotRequired[float]  # success: additive increase (calls/s)


class _RateLimit(scripts.Script[_Keys, _Document, list[Any]]):
    """The script's answer for the op (a list of numbers and number strings, see lua/rate_limit.lua)."""

    NAME = "rate_limit"
    PRELUDE = ()
    Keys = _Keys

    def reply(self, raw: Any) -> list[Any]:
        return list(raw)


@dataclass(frozen=True, slots=True)
class Grant:
    """One call slot handed out: its lane, the Redis time it was granted, its order number, and
    how long ``acquire`` waited for it (seconds, this process's clock)."""

    lane: str
    at_s: float
    seq: int
    waited_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The shared bucket as the Redis server sees it now."""

    now_s: float
    rate_per_s: float
    tokens: float
    paused_until_s: float | None
    granted: int


class RateLimiter:
    """Calls per second (burst, headroom) for one OVH consumer key, shared through Redis.

    ``key`` names the consumer key; pass a hash of endpoint, application key and consumer key,
    never a secret. Every replica must be configured with the same ``rate_per_s``, ``burst`` and
    ``headroom`` (each call passes its own). ``lanes`` are ordered highest priority first;
    ``headroom`` (calls' worth, may be a fraction) is kept for ``headroom_lanes``.
    ``on_grant`` is called after each grant, in the granted thread (metrics, tests).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        key: str,
        rate_per_s: float,
        burst: int,
        headroom: float = 0.0,
        lanes: Sequence[str] = LIMITER_LANES,
        headroom_lanes: Sequence[str] = HEADROOM_LANES,
        min_rate_per_s: float | None = None,
        decrease_factor: float = DEFAULT_DECREASE_FACTOR,
        increase_per_success: float | None = None,
        on_grant: Callable[[Grant], None] | None = None,
    ) -> None:
        if not key:
            raise ValueError("key must name the OVH consumer key")
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        if not 0 < decrease_factor < 1:
            raise ValueError("decrease_factor must be between 0 and 1")
        if not lanes or len(set(lanes)) != len(lanes):
            raise ValueError("lanes must be distinct and not empty")
        if not 0 <= headroom <= 1000 or not set(headroom_lanes) <= set(lanes):
            raise ValueError("headroom must be 0..1000 calls, kept for some of the lanes")
        self.redis = client
        self.key = key
        self.rate_per_s = float(rate_per_s)
        self.burst = int(burst)
        self.lanes = tuple(lanes)
        self.headroom = float(headroom)
        self._headroom_micro = round(self.headroom * 1_000_000)
        self._uses_headroom = tuple(lane in headroom_lanes for lane in self.lanes)
        if min_rate_per_s is None:
            min_rate_per_s = max(DEFAULT_MIN_RATE_PER_S, self.rate_per_s * DEFAULT_FLOOR_SHARE)
        self.min_rate_per_s = min(float(min_rate_per_s), self.rate_per_s)
        self.decrease_factor = float(decrease_factor)
        #: Default: a twentieth of the configured rate per success, so a halved rate is back in
        #: about ten successful calls.
        self.increase_per_success = self.rate_per_s / 20 if increase_per_success is None else increase_per_success
        self.on_grant = on_grant
        self._keys: _Keys = {"state": keys.rate_limit(key)}
        self._waiters = [keys.rate_waiters(key, lane) for lane in self.lanes]
        self._script = _RateLimit(client)
        self._local = threading.local()  # the seq of this thread's last grant, for on_rate_limited

    def _run(self, document: dict[str, Any]) -> list[Any]:
        refs = self._script.refs()
        full: _Document = {
            "rate": self.rate_per_s,
            "burst": self.burst,
            "headroom": self._headroom_micro,
            "state_ttl_ms": int(STATE_TTL_S * 1000),
            "waiters": [refs(name) for name in self._waiters],
            **document,  # type: ignore[typeddict-item]
        }
        return self._script(self._keys, full, refs)

    def acquire(self, lane: str, timeout_s: float | None = None, stop: threading.Event | None = None) -> bool:
        """Block until ``lane`` may make one call; ``False`` if ``timeout_s`` passed or ``stop``
        was set first.

        ``timeout_s=0`` tries once. Call it before every attempt of an OVH call, retries included.
        """
        try:
            index = self.lanes.index(lane) + 1
        except ValueError:
            raise ValueError(f"unknown lane {lane!r}; expected one of {', '.join(self.lanes)}") from None
        started = time.monotonic()
        deadline = None if timeout_s is None else started + max(timeout_s, 0.0)
        waiter = uuid.uuid4().hex
        waiter_ttl_us = int(WAITER_TTL_S * 1_000_000)
        granted = False
        try:
            while True:
                ok, now_us, wait_us, seq = self._run(
                    {
                        "op": "acquire",
                        "lane": index,
                        "waiter": waiter,
                        "waiter_ttl_us": waiter_ttl_us,
                        "uses_headroom": self._uses_headroom[index - 1],
                    }
                )
                if ok:
                    granted = True
                    self._local.seq = int(seq)
                    if self.on_grant is not None:
                        self.on_grant(Grant(lane, now_us / 1_000_000, int(seq), time.monotonic() - started))
                    return True
                sleep = min(wait_us / 1_000_000, MAX_SLEEP_S)
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    sleep = min(sleep, left)
                if stop is None:
                    time.sleep(max(sleep, 0.0005))
                elif stop.wait(max(sleep, 0.0005)):
                    return False
        finally:
            if not granted:
                # Leave at once rather than holding lower lanes back until the registration expires.
                try:
                    self.redis.zrem(self._waiters[index - 1], waiter)
                except redis.RedisError:
                    pass

    def on_rate_limited(self, retry_after_s: float | None) -> None:
        """OVH answered 429: cut the shared rate and grant nothing before ``retry_after_s``.

        Call it from the thread that acquired the slot for the refused call: a 429 for a call
        granted before the last cut extends the pause but does not cut the rate again.
        """
        retry_after_us = -1 if retry_after_s is None else int(max(retry_after_s, 0.0) * 1_000_000)
        seq = getattr(self._local, "seq", -1)
        self._run(
            {
                "op": "rate_limited",
                "retry_after_us": retry_after_us,
                "seq": seq,
                "floor": self.min_rate_per_s,
                "factor": self.decrease_factor,
            }
        )

    def release(self) -> None:
        """Give back a slot granted to a call that then had nothing to send."""
        self._run({"op": "release"})

    def on_success(self) -> None:
        """OVH answered (anything but 429): win back part of the configured rate."""
        self._run({"op": "success", "increase": self.increase_per_success})

    def current_rate(self) -> float:
        """The shared rate in force (calls per second): the configured one unless 429s cut it."""
        return self.snapshot().rate_per_s

    def snapshot(self) -> Snapshot:
        now_us, tokens, ts_us, rate, granted = self._run({"op": "state"})
        return Snapshot(
            now_s=now_us / 1_000_000,
            rate_per_s=float(rate),
            tokens=tokens / 1_000_000,
            paused_until_s=ts_us / 1_000_000 if ts_us > now_us else None,
            granted=int(granted),
        )

    def waiting(self, lane: str) -> int:
        """Live waiters of ``lane`` across every replica (a gauge for metrics and tests)."""
        seconds, micros = self.redis.time()
        now_us = seconds * 1_000_000 + micros
        return int(self.redis.zcount(keys.rate_waiters(self.key, lane), f"({now_us}", "+inf"))
