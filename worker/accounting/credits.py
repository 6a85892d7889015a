"""How many credits a send costs, computed the way OVH bills it, and what the account has left.

Parts: GSM 03.38 texts (``gsm0338`` codec; extension characters such as ``€`` take two
septets): 160 in one SMS, 153 per part when concatenated. Anything else is UCS-2, counted in
UTF-16 code units (an emoji takes two): 70, then 67 per part. Commercial SMS (``noStopClause``
false) get OVH's STOP mention appended first. More than ``MAX_PARTS`` parts cannot be sent.

Credits: parts times the destination's rate (``RateTable``: ``GET /sms/rates/destinations``,
cached per country). ``AccountBalance`` caches the account's ``creditsLeft`` for a best-effort
check before staging. Both are read from memory on the accept path and refreshed by
``worker.accounting.refresher`` in the background, under the shared rate limiter.

The part counting is the worker's own implementation; the sandbox has an independent one, and
``tests/test_credits.py`` checks they agree.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
import redis

from worker.errors import GatewayError, NoSlot, PermanentError, SmsWorkerError
from worker.store import keys

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


class RateUnknown(SmsWorkerError):
    """Nobody has read this destination's credit rate from OVH yet: the request cannot be priced safely."""


#: Fetches one OVH resource: ``fetch(path, **params)``; raises ``GatewayError`` (the refresher
#: passes the gateway's GET behind a background rate-limit slot).
Fetch = Callable[..., Any]


class RateTable:
    """Credits per SMS part by destination country, as OVH prices them, shared through Redis.

    ``rate`` is on the accept path and never calls OVH: it reads this process's memory, then the
    rates other replicas and earlier runs read (``keys.RATES``, one HGET on a miss). A
    destination nobody has priced yet is queued for the refresher and its request refused with
    ``RateUnknown`` (code ``rate_unknown``: send it again in a few seconds): reserving at a
    guessed rate could overspend a quota, and waiting for OVH here would hold up every lane's
    intake. Rates older than ``ttl_s`` are still used while the refresher reads them again.
    ``prefetch`` lists the countries read at start.
    """

    def __init__(self, client: redis.Redis, *, ttl_s: float, clock: Callable[[], float] = time.time):
        self.redis = client
        self.ttl_s = ttl_s
        self._clock = clock
        self._known: dict[str, tuple[float | str, float]] = {}  # country -> (rate or refusal, read at unix s)
        self._wanted: set[str] = set()
        self._lock = threading.Lock()
        #: Set when a destination nobody has priced is asked for: the refresher reads it at once.
        self.wanted = threading.Event()

    def rate(self, country: str) -> float:
        """Credits per part towards ``country`` (ISO 3166 alpha-2, any case)."""
        country = country.lower()
        known = self._known.get(country) or self._load(country)
        if known is None:
            with self._lock:
                self._wanted.add(country)
            self.wanted.set()
            raise RateUnknown(
                f"the credit rate of destination {country.upper()!r} is not known yet (it is read from OVH)"
            )
        value, at = known
        if self._clock() - at >= self.ttl_s:
            with self._lock:
                self._wanted.add(country)  # stale: read again in the background, used meanwhile
        if isinstance(value, str):
            raise UnknownDestination(f"OVH has no credit rate for destination {country!r}: {value}")
        return value

    def _load(self, country: str) -> tuple[float | str, float] | None:
        raw = self.redis.hget(keys.RATES, country)
        if raw is None:
            return None
        data = json.loads(raw)
        known: tuple[float | str, float] = (
            (float(data["credit"]) if "credit" in data else str(data["refused"])),
            float(data["at"]),
        )
        self._known[country] = known
        return known

    def known(self, country: str) -> bool:
        """Whether ``country``'s rate (or OVH's refusal to price it) was read already, however long
        ago: if not, requests wait for it."""
        country = country.lower()
        return country in self._known or self._load(country) is not None

    def pending(self) -> list[str]:
        """Countries to read: asked for and not known, or known for longer than ``ttl_s``."""
        with self._lock:
            wanted, self._wanted = self._wanted, set()
        return sorted(wanted)

    def fetch(self, fetch: Fetch, country: str) -> float | None:
        """Read ``country``'s rate from OVH (``GET /sms/rates/destinations``); ``None`` if not priced."""
        country = country.lower()
        now = self._clock()
        try:
            answer = fetch("/sms/rates/destinations", country=country, _need_auth=False)
            record: dict[str, Any] = {"credit": float(answer["credit"]), "at": now}
        except PermanentError as exc:  # 400/404: OVH does not price (or know) this destination
            record = {"refused": exc.message, "at": now}
        except (GatewayError, KeyError, TypeError, ValueError) as exc:
            # no background slot in time is expected under load or at start; anything else is news
            level = logging.INFO if isinstance(exc, NoSlot) else logging.WARNING
            log.log(level, "credit rate of %s not read (%s); trying again later", country, exc)
            with self._lock:
                self._wanted.add(country)
            return None
        self.redis.hset(keys.RATES, country, json.dumps(record))
        self._known[country] = (record.get("credit", record.get("refused", "")), now)
        return record.get("credit")


class AccountBalance:
    """The ``creditsLeft`` of SMS accounts (``GET /sms/{sn}``), kept in memory, refreshed in the background.

    A best-effort guard only: other senders (the control panel, other API clients) share the
    account and replicas each keep their own copy, so OVH stays authoritative and refuses a
    call it cannot pay. Between refreshes, this process subtracts what it staged, so a burst
    against an empty account is refused here rather than at OVH. ``None`` while unknown (not
    read yet, or OVH did not answer): the check is then skipped, never turned into a refusal.
    ``credits_left`` never calls OVH: accounts asked for are read by the refresher every
    ``refresh_s`` seconds.
    """

    def __init__(self, *, refresh_s: float, clock: Callable[[], float] = time.monotonic):
        self.refresh_s = refresh_s
        self._clock = clock
        self._left: dict[str, tuple[float, float]] = {}  # service -> (credits left, fetched at)
        self._wanted: set[str] = set()
        self._lock = threading.Lock()

    def credits_left(self, service: str) -> float | None:
        with self._lock:
            cached = self._left.get(service)
            if cached is None or self._clock() - cached[1] >= self.refresh_s:
                self._wanted.add(service)
        return None if cached is None else cached[0]

    def debit(self, service: str, credits: float) -> None:
        """Subtract credits just staged from the cached figure (until the next refresh)."""
        with self._lock:
            cached = self._left.get(service)
            if cached is not None:
                self._left[service] = (cached[0] - credits, cached[1])

    def pending(self) -> list[str]:
        with self._lock:
            wanted, self._wanted = self._wanted, set()
        return sorted(wanted)

    def fetch(self, fetch: Fetch, service: str) -> float | None:
        try:
            left = float(fetch(f"/sms/{service}")["creditsLeft"])
        except (GatewayError, KeyError, TypeError, ValueError) as exc:
            # no background slot in time is expected under load (asked again next round)
            level = logging.INFO if isinstance(exc, NoSlot) else logging.WARNING
            log.log(level, "creditsLeft of %s not refreshed: %s", service, exc)
            return None
        with self._lock:
            self._left[service] = (left, self._clock())
        return left
