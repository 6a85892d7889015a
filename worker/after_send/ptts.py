"""OVH's ptt codes, in one place: what each means, where OVH's own descriptions are kept, who asks.

OVH describes each code (``GET /sms/ptts?ptt=``: ``sms.PttDetails``, a description and a
duration: permanent, temporary or indeterminated, whether sending again may help). The worker
keeps OVH's answers in ``keys.PTTS`` (code -> ``{"description", "duration"}``, TTL
``ptt_cache_ttl_s``); until a code is there, and for codes OVH does not know, the SMS users
guide's table (``BUILTIN_PTTS``) stands in.

- Delivery reports (the inbound service, the pull poller) describe codes from memory
  (``PttTable``, reloaded from ``keys.PTTS`` now and then, never waiting on Redis or OVH) and
  note the codes it lacks in ``keys.PTTS_WANTED``; ``fetch_wanted``, run by ``sms-worker run``
  (which holds the OVH credentials; the inbound service does not), asks OVH for them under the
  rate limiter's background lane.
- A campaign report (``PttLookup``) reads ``keys.PTTS`` and asks OVH at once for a code not there.

Both keep OVH's answer the same way (``fetch`` then ``store``); a code OVH does not know is kept
as such, so it is not asked again before the cache expires.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from worker.after_send.receipts import MAX_PTT
from worker.errors import GatewayError, PermanentError
from worker.ovhcloud.background_calls import BackgroundCalls, take_lease
from worker.store import keys

log = logging.getLogger(__name__)

#: ptt code -> (description, duration), from OVHcloud's SMS users guide (non-exhaustive). The
#: duration is ``sms.PttDurationTypeEnum``: whether a failure is worth a retry. Used until OVH's
#: own description (``GET /sms/ptts``) is cached, and when OVH does not know a code.
BUILTIN_PTTS: dict[int, tuple[str, str]] = {
    1: ("Not delivered yet: a phone-related problem, delivery is being retried", "temporary"),
    2: ("Not delivered yet: an operator-related problem, delivery is being retried", "temporary"),
    3: ("Accepted by the operator", "temporary"),
    4: ("Delivered", "permanent"),
    5: ("Undelivered, no detailed information about the failure is known", "permanent"),
    6: ("Cannot tell whether it was delivered: no final status from the operator", "indeterminated"),
    8: ("Expired within the operator's SMSC, no reason for failure", "permanent"),
    20: ("Undeliverable in its current form", "permanent"),
    21: ("Expired for lack of subscriber credit", "permanent"),
    23: ("Incorrect, invalid, blacklisted or permanently barred number for this operator", "permanent"),
    24: ("Subscriber temporarily absent (phone off, out of reach)", "temporary"),
    25: ("Temporary condition in the operator network", "temporary"),
    26: ("Temporary phone-related error (SIM card full, memory exceeded...)", "temporary"),
    27: ("Handset permanently unable to receive this type of message", "permanent"),
    28: ("Rejected on suspicion of spam", "permanent"),
    29: ("Content not permitted on the network or shortcode", "permanent"),
    33: ("Adult content refused by a parental lock", "permanent"),
    39: ("New operator failure", "permanent"),
    73: ("Ported combinations unreachable", "permanent"),
    74: ("Number roaming", "permanent"),
    76: ("Ported combinations blocked for the client (blacklisted at the ported destination)", "permanent"),
    202: ("Ported combinations blocked for the client: contact support", "permanent"),
}

#: How long codes asked for stay in ``keys.PTTS_WANTED`` (seconds).
PTTS_WANTED_TTL_S = 86_400
#: Most codes ``fetch_wanted`` asks OVH for per round.
BATCH = 20


@dataclass(frozen=True, slots=True)
class PttInfo:
    description: str | None
    duration: str | None  # permanent, temporary or indeterminated

    def permanent(self, status: str) -> bool | None:
        """For a failed or expired SMS: whether the failure is permanent; None otherwise."""
        if status not in ("failed", "expired") or self.duration is None:
            return None
        return self.duration == "permanent"


def _parse(value: Any) -> PttInfo | None:
    """A ``keys.PTTS`` value, or None when it cannot be read."""
    try:
        data = json.loads(value)
        return PttInfo(data.get("description"), data.get("duration"))
    except (ValueError, TypeError, AttributeError):
        return None


def _described(ptt: int, cached: PttInfo | None) -> PttInfo:
    """OVH's description when it gave one, else the guide's, else none."""
    if cached is not None and cached.description is not None:
        return cached
    builtin = BUILTIN_PTTS.get(ptt)
    return PttInfo(*builtin) if builtin else PttInfo(None, None)


def fetch(get: Callable[..., Any], ptt: int) -> str:
    """``keys.PTTS``'s value for ``ptt``, asked of OVH (``get``: an OVH GET raising the gateway's
    errors); a code OVH does not know (404) gets a value with no description."""
    try:
        details = get("/sms/ptts", ptt=ptt)
    except PermanentError as exc:
        if exc.status != 404:
            raise
        details = {}
    return json.dumps({"description": details.get("description"), "duration": details.get("duration")})


def store(client: Any, values: dict[str, str], ttl_s: float) -> None:
    """Keep ``values`` (code -> ``fetch``'s value) in ``keys.PTTS`` and renew its TTL."""
    client.hset(keys.PTTS, mapping=values)
    client.expire(keys.PTTS, max(int(ttl_s), 1))


class PttTable:
    """Descriptions of ptt codes from memory: OVH's own, once the worker cached them
    (``keys.PTTS``), else the guide's. Codes seen that OVH has not described yet are collected
    for the worker to fetch. The owner loads the cache (``load``) now and then; lookups never
    wait on Redis or OVH. Thread-safe."""

    def __init__(self) -> None:
        self._cached: dict[int, PttInfo] = {}
        self._wanted: set[int] = set()
        self._lock = threading.Lock()

    def load(self, raw: dict[Any, Any]) -> None:
        """Replace the cached descriptions with ``HGETALL keys.PTTS``."""
        cached = {}
        for code, value in raw.items():
            info = _parse(value)
            try:
                if info is not None:
                    cached[int(code)] = info
            except ValueError:
                continue
        with self._lock:
            self._cached = cached

    def describe(self, ptt: int | None) -> PttInfo:
        if ptt is None:
            return PttInfo(None, None)
        with self._lock:
            found = self._cached.get(ptt)
            if found is None:
                self._wanted.add(ptt)
        return _described(ptt, found)

    def take_wanted(self) -> set[int]:
        """Codes seen since the last call that are not cached (to add to ``keys.PTTS_WANTED``)."""
        with self._lock:
            wanted, self._wanted = self._wanted, set()
            return wanted - set(self._cached)


def ask_for_wanted(pipe: Any, wanted: set[int]) -> None:
    """Queue on ``pipe`` (a sync or asyncio pipeline) the commands adding ``wanted`` (not empty)
    to ``keys.PTTS_WANTED``, for the worker's ptt job to fetch."""
    pipe.sadd(keys.PTTS_WANTED, *sorted(wanted))
    pipe.expire(keys.PTTS_WANTED, PTTS_WANTED_TTL_S)


def fetch_wanted(client: redis.Redis, calls: BackgroundCalls, *, ttl_s: float, period_s: float) -> int:
    """One round (one replica per period): fetch the wanted codes not cached. Returns how many."""
    wanted = sorted(int(code) for code in client.smembers(keys.PTTS_WANTED) if 0 <= int(code) <= MAX_PTT)
    if not wanted or not take_lease(client, "ptts", "all", period_s):
        return 0
    cached = client.hmget(keys.PTTS, wanted)
    fetched = 0
    for code, entry in zip(wanted, cached, strict=True):
        if entry is None:
            if fetched >= BATCH:
                continue  # the next round
            store(client, {str(code): fetch(calls.get, code)}, ttl_s)
            fetched += 1
        client.srem(keys.PTTS_WANTED, code)
    if fetched:
        log.info("ptt descriptions fetched from OVH: %d", fetched)
    return fetched


class PttLookup:
    """Descriptions read when asked, for a report: ``keys.PTTS`` first, else OVH at once (``get``,
    an OVH GET; its answer kept in ``keys.PTTS`` for ``ttl_s``), else the guide's. ``client``
    None: nothing read or kept; ``get`` None: OVH is not asked."""

    def __init__(self, client: redis.Redis | None, get: Callable[..., Any] | None, *, ttl_s: float = 86_400) -> None:
        self.redis = client
        self.get = get
        self.ttl_s = ttl_s
        self._memo: dict[int, PttInfo] = {}

    def describe(self, ptt: int) -> PttInfo:
        if ptt not in self._memo:
            self._memo[ptt] = _described(ptt, self._look_up(ptt))
        return self._memo[ptt]

    def _look_up(self, ptt: int) -> PttInfo | None:
        value = self.redis.hget(keys.PTTS, str(ptt)) if self.redis is not None else None
        if value is None and self.get is not None:
            try:
                value = fetch(self.get, ptt)
            except GatewayError as exc:
                log.info("ptt %s not read from OVH (%s): using the guide's meaning", ptt, exc.message)
                return None
            if self.redis is not None:
                store(self.redis, {str(ptt): value}, self.ttl_s)
        return None if value is None else _parse(value)
