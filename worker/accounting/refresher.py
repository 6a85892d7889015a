"""The background refresher: OVH lookups the accept path needs, made off it.

Destination rates and account balances are read from memory when a request is accepted; this
thread fetches what the caches asked for (new destinations, stale rates, balances older than
their refresh period), each call behind a slot of the shared rate limiter's background lane, so
a slow OVH never holds up intake and these lookups never take a slot a send is waiting for.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..errors import GatewayError
from ..ovhcloud.gateway import OvhGateway
from ..ovhcloud.rate_limit import BACKGROUND_LANE, RateLimiter
from .credits import AccountBalance, RateTable, RateUnknown, UnknownDestination

log = logging.getLogger(__name__)

#: Seconds between two looks at what the caches ask for.
EVERY_S = 1.0
#: Longest wait for a background slot before giving up until the next round (seconds).
SLOT_TIMEOUT_S = 30.0


class NoSlot(GatewayError):
    """No background rate-limit slot in time: try again at the next round."""


class Refresher:
    def __init__(self, rates: RateTable, balance: AccountBalance, gateway: OvhGateway, limiter: RateLimiter) -> None:
        self.rates = rates
        self.balance = balance
        self.gateway = gateway
        self.limiter = limiter
        self._stop: threading.Event | None = None

    def fetch(self, path: str, **params: Any) -> Any:
        """One OVH GET behind a background slot (the ``Fetch`` the caches take)."""
        if not self.limiter.acquire(BACKGROUND_LANE, timeout_s=SLOT_TIMEOUT_S, stop=self._stop):
            raise NoSlot("no rate-limit slot for a background lookup")
        try:
            answer = self.gateway.get(path, **params)
        except GatewayError as exc:
            if exc.status == 429:
                self.limiter.on_rate_limited(exc.retry_after_s)
            raise
        self.limiter.on_success()
        return answer

    def refresh(self) -> None:
        """Fetch everything the caches asked for, once."""
        for country in self.rates.pending():
            self.rates.fetch(self.fetch, country)
        for service in self.balance.pending():
            self.balance.fetch(self.fetch, service)

    def prime(self, countries: list[str], service: str | None) -> None:
        """Read the rates of ``countries`` not known yet, and the default account's balance, now."""
        for country in countries:
            try:
                self.rates.rate(country)
            except RateUnknown:
                if self.rates.fetch(self.fetch, country) is None:
                    log.warning("the credit rate of %s could not be read at start: it will be retried", country)
            except UnknownDestination:
                pass
        if service is not None:
            self.balance.fetch(self.fetch, service)

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        while not stop.wait(EVERY_S):
            try:
                self.refresh()
            except Exception:
                log.exception("refresher error; going on")
