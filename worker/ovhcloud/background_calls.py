"""The OVH calls the worker makes for itself, below the send lanes of the rate limiter.

Syncing the blacklist and the senders, fetching ptt descriptions, reading rates and balances,
polling receipts and incoming SMS in pull mode: none of it sends an SMS, so every such call first
takes a slot of the shared rate limiter's ``BACKGROUND_LANE``, below every send lane (a slot only
when no send waits for one). Reads a request's result waits on (looking up an ambiguous call, the
rate of a destination nobody priced yet) take theirs in ``LOOKUP_LANE`` instead (``in_lane``),
above the bulk lanes. A 429 slows every replica down as for
sends; nothing here is retried on the spot: the next round of the job tries again.

A job shared by replicas takes a lease first (``take_lease``, ``keys.job_lease``), so one
replica does it per period; the threads that run jobs are in ``worker.runners``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from worker.errors import GatewayError, NoSlot
from worker.ovhcloud.gateway import OvhGateway
from worker.ovhcloud.rate_limit import ACQUIRE_TIMEOUT_S, BACKGROUND_LANE, LIMITER_LANES, RateLimiter
from worker.store import keys

log = logging.getLogger(__name__)


class BackgroundCalls:
    """Rate-limited OVH calls in ``lane`` of the limiter (below every send lane unless told),
    through the gateway (its classification, OVH's clock read first, one python-ovh client per
    thread). A 429 slows every replica down and an answer wins part of the rate back, as for
    sends. ``stop`` ends a wait for a slot."""

    def __init__(
        self,
        gateway: OvhGateway,
        limiter: RateLimiter,
        *,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
        stop: threading.Event | None = None,
        lane: str = BACKGROUND_LANE,
    ) -> None:
        if lane not in LIMITER_LANES:
            raise ValueError(f"unknown lane {lane!r}")
        self.gateway = gateway
        self.limiter = limiter
        self.acquire_timeout_s = acquire_timeout_s
        self.stop = stop
        self.lane = lane

    def impatient(self, acquire_timeout_s: float) -> BackgroundCalls:
        """The same calls, waiting at most ``acquire_timeout_s`` for a slot (for start-up lookups)."""
        return BackgroundCalls(
            self.gateway, self.limiter, acquire_timeout_s=acquire_timeout_s, stop=self.stop, lane=self.lane
        )

    def in_lane(self, lane: str) -> BackgroundCalls:
        """The same calls, taking their slots in ``lane`` of the limiter."""
        return BackgroundCalls(
            self.gateway, self.limiter, acquire_timeout_s=self.acquire_timeout_s, stop=self.stop, lane=lane
        )

    def get(self, path: str, **params: Any) -> Any:
        return self._call(lambda: self.gateway.get(path, **params))

    def put(self, path: str, **body: Any) -> Any:
        return self._call(lambda: self.gateway.put(path, **body))

    def delete(self, path: str) -> Any:
        return self._call(lambda: self.gateway.delete(path))

    def _call(self, call: Callable[[], Any]) -> Any:
        if not self.limiter.acquire(self.lane, timeout_s=self.acquire_timeout_s, stop=self.stop):
            raise NoSlot(f"no rate-limit slot for a {self.lane} call in time")
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
