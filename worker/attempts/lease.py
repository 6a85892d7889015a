"""The worker's lease: how other workers tell it is alive, and how it fences itself.

A lease is a Redis key (``keys.lease(token)``, value: the worker's name) with a TTL of
``lease_s``, refreshed every ``lease_s / 5`` by a thread of its own, whatever the dispatchers
are doing. Attempts are owned by a lease token: while the key exists, nobody else touches them;
once it expired, any live worker's sweep takes them over (``Attempts.sweep``) within a fifth of
a lease period, and every Lua transition refuses the old owner (fencing).

The worker also keeps a *local* view: the lease is valid until ``lease_s`` after the moment it
sent its last successful refresh (monotonic clock), never later than the key itself lives. A
dispatcher checks that view right before each OVH call, with a margin of the connect timeout, so
a worker paused past its lease (SIGSTOP, a VM pause) wakes up unable to call: the Redis check
already passed cannot be trusted after a pause, the local one is made after it. A lost lease is
replaced by a new token: the attempts of the old one are taken over, never resumed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import redis

from contracts.redis_connection import text
from worker.attempts.lifecycle import Owner
from worker.store import keys

log = logging.getLogger(__name__)


class Lease:
    def __init__(
        self, client: redis.Redis, *, worker: str, lease_s: float, clock: Callable[[], float] = time.monotonic
    ):
        self.redis = client
        self.worker = worker
        self.lease_s = lease_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._valid_until = 0.0  # local monotonic time

    @property
    def refresh_every_s(self) -> float:
        return self.lease_s / 5

    def owner(self) -> Owner | None:
        """Who this worker is right now, or ``None`` while it holds no valid lease."""
        with self._lock:
            if self._token is None or self._clock() >= self._valid_until:
                return None
            return Owner(self.worker, self._token)

    def valid(self, owner: Owner, margin_s: float = 0.0) -> bool:
        """Whether ``owner`` is still this worker's lease for at least ``margin_s`` seconds (local view)."""
        with self._lock:
            return owner.token == self._token and self._clock() + margin_s < self._valid_until

    def refresh(self) -> bool:
        """Extend the lease, or take a new one if it was lost; ``False`` when Redis did not answer."""
        ttl_ms = int(self.lease_s * 1000)
        sent_at = self._clock()
        with self._lock:
            token = self._token
        try:
            if token is not None and self.redis.set(keys.lease(token), self.worker, xx=True, px=ttl_ms):
                self._extend(token, sent_at)
                return True
            if token is not None:
                log.warning("lease %s expired: its attempts are taken over; taking a new lease", token[:8])
            token = uuid.uuid4().hex
            if self.redis.set(keys.lease(token), self.worker, nx=True, px=ttl_ms):
                self._extend(token, sent_at)
                return True
        except redis.RedisError as exc:
            log.warning("lease not refreshed (%s): valid for %.1f s more", exc, max(self._left(), 0.0))
        return False

    def release(self) -> None:
        """Give the lease up at a clean exit: nothing is left to take over."""
        with self._lock:
            token, self._token = self._token, None
        if token is not None:
            try:
                self.redis.delete(keys.lease(token))
            except redis.RedisError:
                pass  # it expires by itself

    def _extend(self, token: str, sent_at: float) -> None:
        with self._lock:
            self._token = token
            self._valid_until = sent_at + self.lease_s

    def _left(self) -> float:
        with self._lock:
            return self._valid_until - self._clock()


def live_workers(client: redis.Redis) -> list[str]:
    """Names of the workers holding a lease now (one ``SCAN`` of the lease keys, then their values)."""
    found = list(client.scan_iter(match=keys.LEASES, count=1000))
    names = client.mget(found) if found else []
    return sorted(text(name) for name in names if name is not None)


class LeaseKeeper:
    """The thread that keeps the lease and sweeps: refresh, then ``on_tick`` (the sweeps), every
    ``lease.refresh_every_s``, until ``stop`` is set. ``alive()`` is called every round, Redis
    answering or not (the liveness probe: a Redis outage must not get the pod restarted)."""

    def __init__(self, lease: Lease, on_tick: Callable[[], None], alive: Callable[[], None] | None = None) -> None:
        self.lease = lease
        self.on_tick = on_tick
        self.alive = alive

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self.alive is not None:
                self.alive()
            if self.lease.refresh():
                try:
                    self.on_tick()
                except redis.RedisError as exc:
                    log.warning("sweep skipped: %s", exc)
                except Exception:
                    log.exception("sweep failed; trying again at the next tick")
            stop.wait(self.lease.refresh_every_s)
