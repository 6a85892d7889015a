"""The background refresher: OVH lookups the accept path needs, made off it.

Destination rates and account balances are read from memory when a request is accepted; this
thread fetches what the caches asked for (new destinations, stale rates, balances older than
their refresh period), so a slow OVH never holds up intake. Each call takes a slot of the shared
rate limiter: the rate of a destination nobody has priced yet in the lookup lane, above the bulk
lanes (requests wait for it: a one-time code to a new country is not held behind a campaign);
everything else in the background lane, never a slot a send is waiting for.
"""

from __future__ import annotations

import logging
import threading

from worker.accounting.credits import AccountBalance, RateTable, RateUnknown, UnknownDestination
from worker.ovhcloud.background_calls import BackgroundCalls
from worker.ovhcloud.rate_limit import LOOKUP_LANE

log = logging.getLogger(__name__)

#: Seconds between two looks at what the caches ask for.
EVERY_S = 1.0
#: Longest a start-up lookup waits for its background slot (seconds).
PRIME_SLOT_S = 2.0
#: Longest a background read of a round waits for its slot (seconds): under a saturating
#: campaign it gets none, and the round must not hold up the rate of a destination nobody priced
#: yet, asked for meanwhile; what was not read is asked again next round.
BACKGROUND_SLOT_S = 2.0


class Refresher:
    def __init__(self, rates: RateTable, balance: AccountBalance, calls: BackgroundCalls) -> None:
        self.rates = rates
        self.balance = balance
        self.calls = calls
        self._background = calls.impatient(BACKGROUND_SLOT_S)
        self._urgent = calls.in_lane(LOOKUP_LANE)

    def refresh(self) -> None:
        """Fetch everything the caches asked for, once: first the rates requests wait for."""
        for country in sorted(self.rates.pending(), key=self.rates.known):
            calls = self._background if self.rates.known(country) else self._urgent
            self.rates.fetch(calls.get, country)
        for service in self.balance.pending():
            self.balance.fetch(self._background.get, service)

    def prime(self, countries: list[str], service: str | None) -> None:
        """At start: read the rates of ``countries`` nobody has read yet (a first deployment: Redis
        has none), and the default account's balance, waiting at most ``PRIME_SLOT_S`` for each
        slot: a start never waits long behind busy lanes (the refresher reads what was missed)."""
        calls = self.calls.impatient(PRIME_SLOT_S)
        for country in countries:
            try:
                self.rates.rate(country)
            except RateUnknown:
                if self.rates.fetch(calls.get, country) is None:
                    log.warning("the credit rate of %s could not be read at start: it will be retried", country)
            except UnknownDestination:
                pass
        if service is not None and self.balance.fetch(calls.get, service) is None:
            self.balance.credits_left(service)  # asked again by the refresher's next round

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            # every EVERY_S, or at once when a destination nobody has priced is asked for
            self.rates.wanted.wait(EVERY_S)
            self.rates.wanted.clear()
            if stop.is_set():
                return
            try:
                self.refresh()
            except Exception:
                log.exception("refresher error; going on")
