"""How many credits a send costs, computed the way OVH bills it, and what the account has left.

Parts: GSM 03.38 texts (``gsm0338`` codec; extension characters such as ``€`` take two
septets): 160 in one SMS, 153 per part when concatenated. Anything else is UCS-2, counted in
UTF-16 code units (an emoji takes two): 70, then 67 per part. Commercial SMS (``noStopClause``
false) get OVH's STOP mention appended first. More than ``MAX_PARTS`` parts cannot be sent.

Credits: parts times the destination's rate (``RateTable``: ``GET /sms/rates/destinations``,
cached per country). ``AccountBalance`` caches the account's ``creditsLeft`` for a best-effort
check before staging.

The part counting is the worker's own implementation; the sandbox has an independent one, and
``tests/test_credits.py`` checks they agree.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
import ovh.exceptions

from ..errors import SmsWorkerError

log = logging.getLogger(__name__)

#: What OVH appends to a commercial SMS (noStopClause false): the French legal opt-out mention.
STOP_MENTION = "\nSTOP au 36111"

#: Most concatenated parts OVH sends for one SMS.
MAX_PARTS = 6

GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


class MessageTooLong(ValueError):
    """The text needs more than ``MAX_PARTS`` parts."""


@dataclass(frozen=True, slots=True)
class Estimate:
    characters: int  # septets (GSM) or UTF-16 code units (UCS-2), STOP mention included
    encoding: str  # "gsm" or "ucs2"
    parts: int


def gsm_length(text: str) -> int | None:
    """Septets ``text`` takes in GSM 03.38, or ``None`` when it cannot be written in it."""
    if "\x1b" in text:  # the codec passes a bare ESC through; it is not a character of the alphabet
        return None
    try:
        return len(text.encode("gsm03.38"))
    except UnicodeEncodeError:
        return None


@functools.lru_cache(maxsize=4096)  # broadcasts repeat one text: count its parts once
def estimate(message: str, *, no_stop_clause: bool) -> Estimate:
    """Parts OVH will bill for ``message``; raises ``MessageTooLong`` past ``MAX_PARTS``."""
    text = message if no_stop_clause else message + STOP_MENTION
    septets = gsm_length(text)
    if septets is not None:
        length, single, per_part, encoding = septets, GSM_SINGLE, GSM_PART, "gsm"
    else:
        length, single, per_part, encoding = len(text.encode("utf-16-le")) // 2, UCS2_SINGLE, UCS2_PART, "ucs2"
    parts = 1 if length <= single else math.ceil(length / per_part)
    if parts > MAX_PARTS:
        limit = single if MAX_PARTS == 1 else per_part * MAX_PARTS
        raise MessageTooLong(
            f"message needs {parts} SMS parts ({length} {'GSM characters' if encoding == 'gsm' else 'UCS-2 characters'}"
            f"{'' if no_stop_clause else ' with the STOP mention'}); at most {MAX_PARTS} parts ({limit}) can be sent"
        )
    return Estimate(length, encoding, parts)


class UnknownDestination(SmsWorkerError):
    """OVH has no credit rate for this destination (it refused the country)."""


class RateTable:
    """Credits per SMS part by destination country, read from OVH and cached process-wide.

    ``GET /sms/rates/destinations?country=<iso>`` (``sms.DestinationRates.credit``), fetched
    lazily the first time a country is needed and again once ``ttl_s`` seconds old. When OVH
    does not answer, a stale rate is used, else ``fallback``: the estimate only decides the
    reservation, settlement uses OVH's own figure, and a request is not held up (nor lost) for
    a price list; the jobs call itself will meet the same outage and fail cleanly.
    """

    #: After a failed fetch, seconds before the next try (the fallback or a stale rate meanwhile).
    RETRY_AFTER_FAILURE_S = 5.0

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        ttl_s: float,
        fallback: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._client_factory = client_factory
        self._client: Any = None
        self.ttl_s = ttl_s
        self.fallback = fallback
        self._clock = clock
        self._rates: dict[str, tuple[float, float]] = {}  # country -> (credits per part, fetched at)
        self._failed_at = -math.inf
        self._lock = threading.Lock()

    def rate(self, country: str) -> float:
        """Credits per part towards ``country`` (ISO 3166 alpha-2, any case)."""
        country = country.lower()
        cached = self._rates.get(country)
        if cached is not None and self._clock() - cached[1] < self.ttl_s:
            return cached[0]
        if self._clock() - self._failed_at < self.RETRY_AFTER_FAILURE_S:
            return cached[0] if cached is not None else self.fallback
        with self._lock:  # one fetch at a time; the others then find it cached
            cached = self._rates.get(country)
            if cached is not None and self._clock() - cached[1] < self.ttl_s:
                return cached[0]
            try:
                if self._client is None:
                    self._client = self._client_factory()
                answer = self._client.get("/sms/rates/destinations", country=country, _need_auth=False)
                rate = float(answer["credit"])
            except (ovh.exceptions.BadParametersError, ovh.exceptions.ResourceNotFoundError) as exc:
                raise UnknownDestination(f"OVH has no credit rate for destination {country!r}: {exc}") from None
            except (ovh.exceptions.APIError, KeyError, TypeError, ValueError) as exc:
                self._failed_at = self._clock()
                used = cached[0] if cached is not None else self.fallback
                log.warning("credit rate of %s unavailable (%s); estimating with %s", country, exc, used)
                return used
            self._rates[country] = (rate, self._clock())
            return rate


class AccountBalance:
    """The ``creditsLeft`` of SMS accounts (``GET /sms/{sn}``), cached ``refresh_s`` seconds.

    A best-effort guard only: other senders (the control panel, other API clients) share the
    account and replicas each keep their own copy, so OVH stays authoritative and refuses a
    call it cannot pay. Between refreshes, this process subtracts what it staged, so a burst
    against an empty account is refused here rather than at OVH. ``None`` when unknown (OVH
    did not answer): the check is then skipped, never turned into a refusal.
    """

    #: After a failed refresh, seconds before the next try (others use the stale figure meanwhile).
    RETRY_AFTER_FAILURE_S = 5.0

    def __init__(
        self, client_factory: Callable[[], Any], *, refresh_s: float, clock: Callable[[], float] = time.monotonic
    ):
        self._client_factory = client_factory
        self._client: Any = None
        self.refresh_s = refresh_s
        self._clock = clock
        self._left: dict[str, tuple[float, float]] = {}  # service -> (credits left, fetched or tried at)
        self._failed: dict[str, float] = {}  # service -> when a first fetch failed
        self._data_lock = threading.Lock()
        self._fetch_lock = threading.Lock()

    def credits_left(self, service: str) -> float | None:
        cached = self._left.get(service)
        if cached is not None and self._clock() - cached[1] < self.refresh_s:
            return cached[0]
        if cached is None and self._clock() - self._failed.get(service, -math.inf) < self.RETRY_AFTER_FAILURE_S:
            return None
        # One refresh at a time; while one runs, the others keep the figure they have (if any).
        if not self._fetch_lock.acquire(blocking=cached is None):
            return cached[0] if cached is not None else None
        try:
            cached = self._left.get(service)
            if cached is not None and self._clock() - cached[1] < self.refresh_s:
                return cached[0]
            if cached is None and self._clock() - self._failed.get(service, -math.inf) < self.RETRY_AFTER_FAILURE_S:
                return None
            try:
                if self._client is None:
                    self._client = self._client_factory()
                left = float(self._client.get(f"/sms/{service}")["creditsLeft"])
            except (ovh.exceptions.APIError, KeyError, TypeError, ValueError) as exc:
                log.warning("creditsLeft of %s not refreshed: %s", service, exc)
                if cached is not None:  # keep it, and try again a little later
                    retry_at = self._clock() - self.refresh_s + min(self.RETRY_AFTER_FAILURE_S, self.refresh_s)
                    with self._data_lock:
                        self._left[service] = (cached[0], retry_at)
                else:
                    self._failed[service] = self._clock()
                return cached[0] if cached is not None else None
            with self._data_lock:
                self._left[service] = (left, self._clock())
            return left
        finally:
            self._fetch_lock.release()

    def debit(self, service: str, credits: float) -> None:
        """Subtract credits just staged from the cached figure (until the next refresh)."""
        with self._data_lock:
            cached = self._left.get(service)
            if cached is not None:
                self._left[service] = (cached[0] - credits, cached[1])
