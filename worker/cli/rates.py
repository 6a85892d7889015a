"""``sms-worker rates [--country fr,be,...]``: what one SMS costs towards each destination.

OVH's public rates (``GET /sms/rates/destinations``, no credentials needed): the credits one SMS
part uses towards a country (what the worker prices requests with) and its price. Without
``--country``: the default region's, the prefetched ones (``SMS_WORKER_RATES_PREFETCH``) and every
country the worker has priced (its cache in Redis, when ``REDIS_URL`` is set).
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from worker.cli.common import credits_cell, load_settings, ovh_client, print_table, redis_for
from worker.errors import UsageError

_COUNTRY = re.compile(r"^[a-z]{2}$")
#: Billing countries OVH prices in (``sms.BillingCountryEnum``).
BILLING_COUNTRIES = ("es", "fr", "gb", "ie", "it", "pl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--country", metavar="CODES", help="ISO country codes, comma-separated (fr,be,de)")
    parser.add_argument(
        "--billing-country", choices=BILLING_COUNTRIES, help="the country whose prices apply (default: OVH's)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _countries(text: str) -> list[str]:
    countries = [c.strip().lower() for c in text.split(",") if c.strip()]
    wrong = [c for c in countries if not _COUNTRY.match(c)]
    if wrong or not countries:
        raise UsageError(f"--country {text!r}: two-letter ISO codes separated by commas (fr,be,de)")
    return list(dict.fromkeys(countries))


def _known(settings: Any) -> list[str]:
    """The default region, the prefetched countries, and those in the worker's rate cache."""
    known = [settings.default_region.lower(), *(c.lower() for c in settings.rates_prefetch)]
    if settings.redis_url:
        from worker.store import keys

        known += sorted(
            k.decode() if isinstance(k, bytes) else str(k) for k in redis_for(settings, "rates").hkeys(keys.RATES)
        )
    return list(dict.fromkeys(known))


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    countries = _countries(args.country) if args.country else _known(settings)
    client = ovh_client(settings, public=True)
    extra = {"billingCountry": args.billing_country} if args.billing_country else {}
    rates = [client.get("/sms/rates/destinations", _need_auth=False, country=country, **extra) for country in countries]
    if args.json:
        print(json.dumps(rates, indent=2))
        return 0
    rows = [("COUNTRY", "CODE", "CREDITS PER SMS", "PRICE PER SMS")]
    for rate in rates:
        price = rate.get("price") or {}
        rows.append(
            (str(rate.get("country")), str(rate.get("countryCode", "")).upper(), credits_cell(rate.get("credit")),
             str(price.get("text") or price.get("value") or "-"))
        )  # fmt: skip
    print_table(rows)
    return 0
