"""Consumption per SMS account and period: SMS and credits per day, per user, tag or sender.

OVHcloud's cookbook re-invoices "month by month" from ``GET /sms/{sn}/outgoing``, one call per
SMS, within the 6 months OVH keeps; the worker counts instead, as it settles each call:

- **written at settlement, exactly once**: ``settle.lua`` calls ``usage_settled``
  (``worker/store/lua/_usage.lua``) in the step that settles the attempt, so a settlement retried
  after a lost reply (the attempt is then settled already) counts nothing twice, and a call is
  counted by whichever of its owner or a reconciler settles it;
- **what**: the SMS OVH accepted (one per receiver) and OVH's own credits for them
  (``totalCreditsRemoved``, apportioned), plus the SMS whose outcome stayed unknown (OVH may have
  sent and billed them: they are listed apart, never in ``sms`` or ``credits``);
- **when**: the day, in ``usage_timezone`` (Europe/Paris by default), by Redis' clock, of the
  settlement (seconds after OVH created the SMS, its ``creationDatetime``), or, for a call that
  had to be reconciled, of its last try (the attempt's ``called_at``). A call made just before
  midnight and settled after it is counted on the next day, where OVH lists it the day before;
- **where**: one hash per account and day (``keys.usage``), kept ``usage_ttl_s`` (400 days by
  default: a monthly invoice, its corrections and a year-on-year comparison) after the day's last
  settlement.

Every jobs call carries one user (or none), one tag and one sender, so each settlement adds to
one value of each dimension.
"""

from __future__ import annotations

import time
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypedDict

import redis

from worker.store import keys

#: The dimensions a report groups by (the fields of ``lua/_usage.lua``).
DIMENSIONS: tuple[str, ...] = ("user", "tag", "sender")
#: Longest period a report reads (days): one Redis hash per day.
MAX_PERIOD_DAYS = 800


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone ``name``; ``ValueError`` saying why when there is none by that name."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Paris or UTC)") from None


def day_of(unix_s: float, tz: zoneinfo.ZoneInfo) -> str:
    """The day (``YYYY-MM-DD``) an instant falls on in ``tz``."""
    return datetime.fromtimestamp(unix_s, tz).date().isoformat()


class UsageDocument(TypedDict):
    """The ``usage`` part of settle.lua's document (``usage_settled`` in ``lua/_usage.lua``)."""

    key: int  # index of keys.usage(service, day) in KEYS
    user: str  # the API user's login, "" for the account itself
    tag: str  # "" for none
    sender: str  # "" for OVH's short number
    sms: int  # SMS OVH accepted
    credits: float  # OVH's credits for them
    unknown: int  # SMS whose outcome stayed unknown
    ttl_s: int
    max_values: int  # keys.USAGE_MAX_VALUES


class UsageRecorder:
    """The ``usage`` part of a settlement's document (``settle.lua``).

    ``clock`` (unix seconds) replaces Redis' clock for choosing the day: a seam for tests that
    spread sends over a month; left ``None``, the day is Redis' (one ``TIME`` per settlement).
    """

    def __init__(
        self, client: redis.Redis, *, ttl_s: int, timezone: str, clock: Callable[[], float] | None = None
    ) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self.tz = zone(timezone)
        self.clock = clock

    def now(self) -> float:
        if self.clock is not None:
            return self.clock()
        seconds, micros = self.redis.time()
        return float(seconds) + int(micros) / 1e6

    def document(
        self,
        refs: Callable[[str], int],
        *,
        service: str,
        login: str | None,
        tag: str | None,
        sender: str | None,
        sms: int,
        credits: float,
        unknown: int,
        called_at_s: float | None = None,
    ) -> UsageDocument | None:
        """What ``usage_settled`` adds for one settled call; ``None`` when there is nothing to count.

        ``refs`` gives the index of a key in the script's ``KEYS`` (``worker.store.scripts.KeyRefs``);
        ``called_at_s`` (Redis' unix time of the call's last try, when the attempt knows it) dates
        the call; else the settlement does.
        """
        if self.ttl_s <= 0 or (sms == 0 and unknown == 0):
            return None
        at = called_at_s if called_at_s and self.clock is None else self.now()
        day = day_of(at, self.tz)
        return {
            "key": refs(keys.usage(service, day)),
            "user": login or "",
            "tag": tag or "",
            "sender": sender or "",
            "sms": sms,
            "credits": credits,
            "unknown": unknown,
            "ttl_s": self.ttl_s,
            "max_values": keys.USAGE_MAX_VALUES,
        }


@dataclass(frozen=True, slots=True)
class UsageRow:
    """SMS and credits of one value of a dimension (over a period, or on ``day``).

    ``value`` is the login, tag or sender ("" for none: the account itself, no tag, OVH's short
    number), or ``None`` for the values counted together past ``keys.USAGE_MAX_VALUES`` a day.
    """

    value: str | None
    sms: int = 0
    credits: float = 0.0
    unknown: int = 0
    day: str | None = None

    def plus(self, sms: int, credits: float, unknown: int) -> UsageRow:
        return UsageRow(self.value, self.sms + sms, self.credits + credits, self.unknown + unknown, self.day)


@dataclass(frozen=True, slots=True)
class Period:
    """Whole days ``[start, end)`` in ``tz``: ``--from 2026-11-01 --to 2026-12-01`` is November."""

    start: date
    end: date
    tz: zoneinfo.ZoneInfo

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"the period ends ({self.end}) before it starts ({self.start})")
        if (self.end - self.start).days > MAX_PERIOD_DAYS:
            raise ValueError(f"a period of {MAX_PERIOD_DAYS} days at most")

    def days(self) -> list[str]:
        return [(self.start + timedelta(days=n)).isoformat() for n in range((self.end - self.start).days)]

    def bounds(self) -> tuple[datetime, datetime]:
        """The first instant of the period and the first one after it, in ``tz``."""
        return (
            datetime.combine(self.start, datetime.min.time(), self.tz),
            datetime.combine(self.end, datetime.min.time(), self.tz),
        )


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class UsageStore:
    """Reads the per-day hashes of ``keys.usage`` (one round trip for a whole period)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def days(self, service: str, period: Period) -> dict[str, dict[str, str]]:
        """Each day of the period that has records: its hash's fields."""
        days = period.days()
        with self.redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(keys.usage(service, day))
            raws = pipe.execute()
        return {day: {_text(k): _text(v) for k, v in raw.items()} for day, raw in zip(days, raws, strict=True) if raw}

    def report(self, service: str, period: Period, by: str, *, per_day: bool = False) -> list[UsageRow]:
        """SMS and credits per value of ``by`` (``user``, ``tag`` or ``sender``) over the period,
        or per day and value with ``per_day``; sorted by day, then credits (most first), then value."""
        if by not in DIMENSIONS:
            raise ValueError(f"by must be one of {', '.join(DIMENSIONS)}")
        rows: dict[tuple[str | None, str | None], UsageRow] = {}
        for day, fields in self.days(service, period).items():
            for value, (sms, credits, unknown) in _values(fields, by).items():
                at = (day if per_day else None, value)
                rows[at] = rows.get(at, UsageRow(value, day=at[0])).plus(sms, credits, unknown)
        return sorted(rows.values(), key=lambda r: (r.day or "", -r.credits, r.value is None, r.value or ""))


def _values(fields: dict[str, str], by: str) -> dict[str | None, tuple[int, float, int]]:
    """``{value: (sms, credits, unknown)}`` of one day's hash for dimension ``by``."""
    found: dict[str | None, list[float]] = {}
    for field, raw in fields.items():
        metric, _, rest = field.partition("|")
        if metric not in ("sms", "credits", "unknown"):
            continue
        dimension, separated, value = rest.partition("|")
        if dimension != by:
            continue
        counts = found.setdefault(value if separated else None, [0, 0.0, 0])
        counts[("sms", "credits", "unknown").index(metric)] += float(raw)
    return {value: (int(c[0]), float(c[1]), int(c[2])) for value, c in found.items()}


def totals(rows: Iterable[UsageRow]) -> UsageRow:
    """The sum of ``rows`` (value ``"total"``)."""
    total = UsageRow("total")
    for row in rows:
        total = total.plus(row.sms, row.credits, row.unknown)
    return total


def today(tz: zoneinfo.ZoneInfo, clock: Callable[[], float] = time.time) -> date:
    return datetime.fromtimestamp(clock(), tz).date()
