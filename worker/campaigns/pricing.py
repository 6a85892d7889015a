"""Credits per SMS part by destination, for a campaign's estimate and for the worker's sake.

The worker prices a request from its shared cache of OVH's rates (``keys.RATES``) and refuses,
with ``rate_unknown``, a destination nobody has read yet (``worker.accounting.credits``). The
campaign command reads each destination of the file once, from that cache or else from OVH's
public rates (``GET /sms/rates/destinations``, no credentials needed) written back to the cache,
so the worker does not refuse the first rows to a new country and ``--dry-run`` can price them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from worker.accounting.credits import RateTable, RateUnknown, UnknownDestination


class Pricing:
    """``rate(country)``: credits per part, or ``None`` when neither the cache nor OVH tells it.

    ``fetch(path, **params)`` is an OVH GET raising ``GatewayError`` (``OvhGateway.get``), or
    ``None`` to use the cache only. Each country is looked up at most once per run.
    """

    def __init__(self, client: redis.Redis, fetch: Callable[..., Any] | None, *, ttl_s: float) -> None:
        self.table = RateTable(client, ttl_s=ttl_s)
        self.fetch = fetch
        self._rates: dict[str, float | None] = {}

    def rate(self, country: str) -> float | None:
        country = country.lower()
        if country in self._rates:
            return self._rates[country]
        rate: float | None
        try:
            rate = self.table.rate(country)
        except UnknownDestination:
            rate = None
        except RateUnknown:
            rate = self.table.fetch(self.fetch, country) if self.fetch is not None else None
        self._rates[country] = rate
        return rate

    def unknown(self) -> list[str]:
        """Countries met whose rate could not be read (upper case)."""
        return sorted(country.upper() for country, rate in self._rates.items() if rate is None)
