"""The account's blacklist as the worker keeps it: numbers commercial SMS must not reach.

Two sources, per account, in Redis (shared by every replica):

- OVH's own list (``GET /sms/{sn}/blacklists``: numbers that answered STOP), read every
  ``blacklist_sync_s`` by one replica and replaced whole (``keys.blacklist``), so a number OVH
  removes is sendable again;
- opt-outs seen by the inbound service or the pull poller (``keys.optouts``), refused at once,
  before the next sync lists them; kept ``keys.OPTOUT_KEEP_S``.

The accept stage never calls OVH and does not read Redis per request: it keeps the union in
memory and re-reads it when the account's generation counter (``keys.blacklist_gen``, moved by
every change) has moved, checked at most once per queue message (``fresh``). So a send taken
from the queue after an opt-out was published is refused.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from contracts.redis_connection import text
from worker.ovhcloud.background_calls import BackgroundCalls
from worker.phones import normalize
from worker.store import keys

log = logging.getLogger(__name__)


class Blacklist:
    def __init__(self, client: redis.Redis, *, default_region: str) -> None:
        self.redis = client
        self.default_region = default_region
        self._mirror: dict[str, tuple[bytes | None, frozenset[str]]] = {}  # service -> (generation, numbers)
        self._lock = threading.Lock()

    # -- accept side -----------------------------------------------------------------------------

    def blocked(self, service: str, numbers: list[str], *, fresh: bool) -> set[str]:
        """The ``numbers`` (E.164) refused on ``service``; ``fresh``: check the generation first."""
        if fresh:
            self._refresh(service)
        found = self._mirror.get(service)
        return set() if found is None else set(found[1].intersection(numbers))

    def _refresh(self, service: str) -> None:
        generation = self.redis.get(keys.blacklist_gen(service))
        known = self._mirror.get(service)
        if known is not None and known[0] == generation:
            return
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(keys.blacklist_gen(service))
            pipe.smembers(keys.blacklist(service))
            pipe.zrange(keys.optouts(service), 0, -1)
            generation, listed, opted_out = pipe.execute()
        numbers = frozenset(text(n) for n in listed) | frozenset(text(n) for n in opted_out)
        with self._lock:
            self._mirror[service] = (generation, numbers)

    # -- sync from OVH ---------------------------------------------------------------------------

    def sync(self, service: str, calls: BackgroundCalls) -> int:
        """Replace the synced list with OVH's; trim old opt-outs. Returns the numbers listed."""
        listed = calls.get(f"/sms/{service}/blacklists")
        numbers = {e164 for raw in listed if (e164 := normalize(str(raw), self.default_region).e164) is not None}
        current = {text(n) for n in self.redis.smembers(keys.blacklist(service))}
        expired = self.redis.zremrangebyscore(keys.optouts(service), "-inf", (time.time() - keys.OPTOUT_KEEP_S) * 1000)
        if numbers != current or expired:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(keys.blacklist(service))
                if numbers:
                    pipe.sadd(keys.blacklist(service), *numbers)
                pipe.incr(keys.blacklist_gen(service))
                pipe.execute()
            log.info("blacklist of %s synced from OVH: %d numbers", service, len(numbers))
        return len(numbers)
