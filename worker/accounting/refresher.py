"""The background refresher: OVH lookups the accept path needs, made off it.

Destination rates and account balances are read from memory when a request is accepted; this
thread fetches what the caches asked for (new destinations, stale rates, balances older than
their refresh period), each call behind a slot of the shared rate limiter's background lane, so
a slow OVH never holds up intake and these lookups never take a slot a send is waiting for.
"""

from __future__ import annotations

import logging
import threading

from ..ovhcloud.background import BackgroundCalls
from .credits import AccountBalance, RateTable, RateUnknown, UnknownDestination

log = logging.getLogger(__name__)

#: Seconds between two looks at what the caches ask for.
EVERY_S = 1.0


class Refresher:
    def __init__(self, rates: RateTable, balance: AccountBalance, calls: BackgroundCalls) -> None:
        self.rates = rates
        self.balance = balance
        self.calls = calls

    def refresh(self) -> None:
        """Fetch everything the caches asked for, once."""
        for country in self.rates.pending():
            self.rates.fetch(self.calls.get, country)
        for service in self.balance.pending():
            self.balance.fetch(self.calls.get, service)

    def prime(self, countries: list[str]) -> None:
        """Read the rates of ``countries`` nobody has read yet, now (a first deployment: Redis has none).

        The balance is left to the refresher's first round: while it is unknown the account check
        is skipped, never turned into a refusal."""
        for country in countries:
            try:
                self.rates.rate(country)
            except RateUnknown:
                if self.rates.fetch(self.calls.get, country) is None:
                    log.warning("the credit rate of %s could not be read at start: it will be retried", country)
            except UnknownDestination:
                pass

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(EVERY_S):
            try:
                self.refresh()
            except Exception:
                log.exception("refresher error; going on")
