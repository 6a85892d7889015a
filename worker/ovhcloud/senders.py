"""Which senders OVH lets each account use (``GET /sms/{sn}/senders[/{sender}]``), cached.

A send naming a sender OVH does not know, or knows but has not enabled (``waitingValidation``,
``refused``, ``disable``), would be refused by OVH after the credits are reserved and a rate-limit
slot spent; the accept stage refuses it first, from this cache, never calling OVH itself:

- the cache is a Redis hash per account (``keys.senders``: sender -> status, field ``*`` when it
  holds every sender OVH lists), shared by the replicas, rebuilt by one of them when it expires
  (``sender_cache_ttl_s``), and copied into each process's memory every few seconds;
- a sender the cache does not know while the account's list is not known yet is allowed (OVH
  remains the authority) and looked up in the background, as is one missing from a known list
  (it may have been declared since).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis

from contracts.redis_connection import text
from worker.errors import GatewayError, PermanentError
from worker.ovhcloud.background_calls import BackgroundCalls, take_lease
from worker.store import keys

log = logging.getLogger(__name__)

#: The status that lets a sender be used; any other (or ``missing``) refuses it.
ENABLED = "enable"
#: Field of ``keys.senders`` present when the hash lists every sender of the account.
COMPLETE = "*"
#: Most senders looked up one by one in one sync.
MAX_SENDERS = 100


class Senders:
    def __init__(self, client: redis.Redis, *, ttl_s: float) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self._known: dict[str, tuple[bool, dict[str, str]]] = {}  # service -> (complete, statuses)
        self._wanted: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def status(self, service: str, sender: str) -> str | None:
        """OVH's status of ``sender`` on ``service`` (``missing`` if OVH does not have it), or
        None while unknown (then it is looked up in the background)."""
        complete, statuses = self._known.get(service, (False, {}))
        found = statuses.get(sender)
        if found is None:
            with self._lock:
                self._wanted.add((service, sender))
            return "missing" if complete else None
        return found

    # -- background ------------------------------------------------------------------------------

    def reload(self, service: str) -> bool:
        """Copy the Redis cache into memory; False when it has expired (a sync is due)."""
        raw = {text(k): text(v) for k, v in self.redis.hgetall(keys.senders(service)).items()}
        complete = raw.pop(COMPLETE, None) is not None
        with self._lock:
            self._known[service] = (complete, raw)
        return complete

    def sync(self, service: str, calls: BackgroundCalls) -> None:
        """Read every sender of the account and its status from OVH into the cache."""
        names = calls.get(f"/sms/{service}/senders")[:MAX_SENDERS]
        statuses: dict[Any, Any] = {COMPLETE: "1"}
        for name in names:
            statuses[str(name)] = self._fetch(service, str(name), calls)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.senders(service))
            pipe.hset(keys.senders(service), mapping=statuses)
            pipe.expire(keys.senders(service), max(int(self.ttl_s), 1))
            pipe.execute()
        log.info("senders of %s read from OVH: %d", service, len(names))

    def look_up_wanted(self, calls: BackgroundCalls) -> None:
        """Ask OVH about the senders requests named that the cache did not know."""
        with self._lock:
            wanted, self._wanted = self._wanted, set()
        for service, sender in sorted(wanted):
            self.record(service, sender, self._fetch(service, sender, calls))
            self.reload(service)

    def record(self, service: str, sender: str, status: str) -> None:
        """Put what OVH now says of ``sender`` (``missing`` once deleted) in the shared cache, so
        the replicas follow ``sms-worker senders add`` or ``delete`` without waiting for it to expire."""
        self.redis.hset(keys.senders(service), sender, status)
        if self.redis.ttl(keys.senders(service)) < 0:  # a new hash: the cache's lifetime
            self.redis.expire(keys.senders(service), max(int(self.ttl_s), 1))

    @staticmethod
    def _fetch(service: str, sender: str, calls: BackgroundCalls) -> str:
        try:
            return str(calls.get(f"/sms/{service}/senders/{sender}").get("status") or "missing")
        except PermanentError as exc:
            if exc.status == 404:
                return "missing"
            raise

    def round(self, services: list[str], calls: BackgroundCalls) -> None:
        """One background round: refresh each account's cache (one replica calls OVH), then look
        up the senders requests named that were not known."""
        for service in services:
            if not self.reload(service) and take_lease(self.redis, "senders", service, self.ttl_s / 2):
                self.sync(service, calls)
                self.reload(service)
        self.look_up_wanted(calls)

    def check_default(self, service: str | None, sender: str | None, calls: BackgroundCalls) -> None:
        """Warn (one log line) when the worker's default sender cannot be used on its account."""
        if service is None or sender is None:
            return
        status = self.status(service, sender)
        if status is None:
            try:
                status = self._fetch(service, sender, calls)
            except GatewayError as exc:
                log.warning("could not check the default sender %r of %s with OVH: %s", sender, service, exc)
                return
        if status != ENABLED:
            log.warning(
                "the default sender %r is not usable on %s (OVH status: %s): requests that name no sender "
                "will be rejected (sender_not_allowed); set SMS_WORKER_SENDER to an enabled sender",
                sender,
                service,
                status,
            )
