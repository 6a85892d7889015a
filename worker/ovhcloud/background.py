"""The OVH calls the worker makes for itself, and the threads that make them.

Syncing the blacklist and the senders, fetching ptt descriptions, polling receipts and incoming
SMS in pull mode: none of it sends an SMS, so every such call first takes a slot of the shared
rate limiter's ``BACKGROUND_LANE``, below every send lane (a slot only when no send waits for
one). A 429 slows every replica down as for sends; nothing here is retried on the spot: the next
round of the job tries again.

``Periodic`` runs one job in a daemon thread every few seconds; ``Background`` starts and stops a
set of them with the worker. A job shared by replicas takes a ``lease`` first (``keys.job_lease``),
so one replica does it per period.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from ..errors import GatewayError, NoSlot
from ..store import keys
from .gateway import OvhGateway
from .rate_limit import BACKGROUND_LANE, RateLimiter

log = logging.getLogger(__name__)

#: Longest a background call waits for its rate-limit slot (seconds); then the round gives up.
ACQUIRE_TIMEOUT_S = 30.0


class BackgroundCalls:
    """Rate-limited OVH calls below every send lane, through the gateway (its classification,
    OVH's clock read first, one python-ovh client per thread). A 429 slows every replica down
    and an answer wins part of the rate back, as for sends. ``stop`` ends a wait for a slot."""

    def __init__(
        self,
        gateway: OvhGateway,
        limiter: RateLimiter,
        *,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
        stop: threading.Event | None = None,
    ) -> None:
        self.gateway = gateway
        self.limiter = limiter
        self.acquire_timeout_s = acquire_timeout_s
        self.stop = stop

    def impatient(self, acquire_timeout_s: float) -> BackgroundCalls:
        """The same calls, waiting at most ``acquire_timeout_s`` for a slot (for start-up lookups)."""
        return BackgroundCalls(self.gateway, self.limiter, acquire_timeout_s=acquire_timeout_s, stop=self.stop)

    def get(self, path: str, **params: Any) -> Any:
        return self._call(lambda: self.gateway.get(path, **params))

    def put(self, path: str, **body: Any) -> Any:
        return self._call(lambda: self.gateway.put(path, **body))

    def _call(self, call: Callable[[], Any]) -> Any:
        if not self.limiter.acquire(BACKGROUND_LANE, timeout_s=self.acquire_timeout_s, stop=self.stop):
            raise NoSlot("no rate-limit slot for a background call in time")
        try:
            answer = call()
        except GatewayError as exc:
            if exc.status == 429:
                self.limiter.on_rate_limited(exc.retry_after_s)
            raise
        self.limiter.on_success()
        return answer


def take_lease(client: redis.Redis, job: str, scope: str, period_s: float) -> bool:
    """True for the one replica that does ``job`` for ``scope`` this period."""
    return bool(client.set(keys.job_lease(job, scope), 1, nx=True, px=max(int(period_s * 1000), 1)))


class Periodic:
    """``job`` in a daemon thread: at once, then every ``every_s`` seconds (or after the delay
    the job returns), until stopped. A failing run is logged; the next one tries again."""

    def __init__(self, name: str, job: Callable[[], float | None], every_s: float) -> None:
        self.name = name
        self.job = job
        self.every_s = every_s
        self.runs = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            delay: float | None = None
            try:
                delay = self.job()
            except NoSlot as exc:  # the send lanes had every slot: expected under load or at start
                log.info("%s: %s; trying again in %g s", self.name, exc, self.every_s)
            except (GatewayError, redis.RedisError) as exc:
                log.warning("%s: %s; trying again in %g s", self.name, exc, self.every_s)
            except Exception:
                log.exception("%s failed; trying again in %g s", self.name, self.every_s)
            self.runs += 1
            stop.wait(self.every_s if delay is None else delay)


class Background:
    """Starts and stops the worker's background jobs (one thread each)."""

    def __init__(self, jobs: list[Periodic]) -> None:
        self.jobs = jobs
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        for job in self.jobs:
            thread = threading.Thread(target=job.run, args=(self._stop,), name=f"sms-{job.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask every job to stop and wait for the one run in progress (a call waits at most its timeouts)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()
