"""The worker's side of the ptt table: fetch OVH's description of the codes reports carried.

The inbound service and the pull poller describe ptt codes from ``keys.PTTS`` (else the built-in
table) and note the codes it lacks in ``keys.PTTS_WANTED``; this job, run by ``sms-worker run``
(which holds the OVH credentials; the inbound service does not), asks ``GET /sms/ptts?ptt=`` for
each, under the rate limiter's background lane, and caches the answers ``ptt_cache_ttl_s``. A
code OVH does not know is cached as such, so it is not asked again before the cache expires.
"""

from __future__ import annotations

import json
import logging

import redis

from worker.after_send.receipts import MAX_PTT, ptt_entry
from worker.errors import PermanentError
from worker.ovhcloud.background_calls import BackgroundCalls, take_lease
from worker.store import keys

log = logging.getLogger(__name__)

#: Most codes fetched per round.
BATCH = 20


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
            try:
                value = ptt_entry(calls.get("/sms/ptts", ptt=code))
            except PermanentError as exc:
                if exc.status != 404:
                    raise
                value = json.dumps({"description": None, "duration": None})  # OVH does not know it
            client.hset(keys.PTTS, str(code), value)
            fetched += 1
        client.srem(keys.PTTS_WANTED, code)
    if fetched:
        client.expire(keys.PTTS, max(int(ttl_s), 1))
        log.info("ptt descriptions fetched from OVH: %d", fetched)
    return fetched
