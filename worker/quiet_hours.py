"""Quiet hours: when a commercial SMS may not be sent, and the next time it may.

The one home of the rule, for every part that needs it: intake and the batch buffers (a
commercial request is held by the worker, not handed to OVH to hold), bulk campaigns (a
document due in the window waits), and reconciliation (where OVH may still hold a send).

Default: the French rule as OVHcloud's FAQ states it, "commercial SMS must not be sent between
8pm and 8am on weekdays, or on Sundays and public holidays", in French time (Europe/Paris);
public holidays from the ``holidays`` library (``holidays.country_holidays("FR")``: the eleven
national ones; Alsace-Moselle's two extra days with ``subdivision="57"`` and so on).
Everything is configurable (``SMS_WORKER_QUIET_HOURS_*``, ``Settings.quiet_hours``). OVH's
sources disagree: its SMS FAQ (2026) states the legal rule above; its French Control Panel guide
(2026) sends commercial SMS "entre 08h00 et 20h00, du lundi au samedi", its Irish one "from
Monday to Friday"; older pages and php-ovh-sms hold them from 22:00 to 08:00 and all weekend.

A send is *commercial* when ``noStopClause`` is false (OVH appends the STOP mention); a
non-commercial send (one-time codes, alerts) is never held. Guarantees, for an aware datetime:
``allowed(t)`` is false exactly inside the window, on a closed weekday or on a holiday (local
time); ``next_allowed(t)`` is ``t`` itself when allowed, else the first allowed instant after
``t`` (the window's end on the next open day), always ``>= t``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

import holidays

#: Weekday names as ``datetime.weekday()`` numbers them.
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: Longest search for an open day (days): a rule closing every day is refused before that.
_SEARCH_DAYS = 400


class QuietHoursError(ValueError):
    """A rule that cannot be used (unknown zone or country, no open day at all)."""


@dataclass(frozen=True)
class QuietHours:
    """The rule: no commercial send from ``start`` to ``end`` (local time, ``end`` the next day
    when earlier than ``start``), nor on ``closed_days`` or the public holidays of ``country``.

    ``enabled`` false: every time is allowed. ``country`` empty: no holidays.
    """

    enabled: bool = True
    timezone: str = "Europe/Paris"
    start: time = time(20, 0)
    end: time = time(8, 0)
    closed_days: frozenset[int] = frozenset({6})  # Sunday
    country: str = "FR"
    subdivision: str | None = None
    extra_dates: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (KeyError, ValueError) as exc:
            raise QuietHoursError(f"unknown time zone {self.timezone!r}") from exc
        if self.country:
            try:
                holidays.country_holidays(self.country, subdiv=self.subdivision)
            except (NotImplementedError, KeyError) as exc:
                raise QuietHoursError(f"no public holidays known for {self.country!r}/{self.subdivision}") from exc
        if self.enabled and len(self.closed_days) >= 7:
            raise QuietHoursError("every weekday is closed: a commercial SMS could never be sent")

    @cached_property
    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def _holidays(self) -> Any:
        if not self.country:
            return {}
        return holidays.country_holidays(self.country, subdiv=self.subdivision)

    def closed_on(self, day: date) -> bool:
        """Whether a whole local day is closed (a closed weekday or a holiday)."""
        return day.weekday() in self.closed_days or day in self._holidays or day in self.extra_dates

    def _in_window(self, moment: time) -> bool:
        if self.start == self.end:
            return False  # no nightly window
        if self.start < self.end:  # e.g. 12:00-14:00, the same day
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def allowed(self, when: datetime) -> bool:
        """Whether a commercial SMS may be sent at ``when`` (aware)."""
        if not self.enabled:
            return True
        local = when.astimezone(self._zone)
        return not (self.closed_on(local.date()) or self._in_window(local.time()))

    def next_allowed(self, when: datetime) -> datetime:
        """``when`` if allowed, else the first allowed instant after it (aware, in the rule's zone)."""
        if self.allowed(when):
            return when
        local = when.astimezone(self._zone)
        # Allowed time starts only at a midnight (after a closed day) or at the window's end:
        # the first of those, after ``when``, that is allowed.
        for offset in range(_SEARCH_DAYS):
            day = local.date() + timedelta(days=offset)
            if self.closed_on(day):
                continue
            for moment in sorted({time(0), self.end}):
                opening = datetime.combine(day, moment, self._zone)
                if opening > local and self.allowed(opening):
                    return opening
        raise QuietHoursError("no allowed time within a year")  # unreachable with an open weekday

    def held_until(self, when: datetime, *, commercial: bool) -> datetime | None:
        """When a send made at ``when`` must wait until, or ``None`` when it may go now."""
        if not commercial:
            return None
        until = self.next_allowed(when)
        return None if until == when else until

    def describe(self) -> str:
        """One line for logs and summaries, e.g. ``20:00-08:00 Europe/Paris, closed sun, FR holidays``."""
        if not self.enabled:
            return "off"
        days = ",".join(WEEKDAYS[d] for d in sorted(self.closed_days)) or "none"
        country = f"{self.country} holidays" if self.country else "no holidays"
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.timezone}, closed {days}, {country}"


def parse_window(text: str) -> tuple[time, time]:
    """``"20:00-08:00"`` as ``(time(20), time(8))``; ``QuietHoursError`` when it is not that."""
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        raise QuietHoursError(f"quiet hours window {text!r}: give HH:MM-HH:MM, e.g. 20:00-08:00") from None
    return start, end


def parse_days(text: str) -> frozenset[int]:
    """``"sat,sun"`` as weekday numbers; empty text, no closed day."""
    days = set()
    for name in (part.strip().lower()[:3] for part in text.split(",") if part.strip()):
        if name not in WEEKDAYS:
            raise QuietHoursError(f"quiet hours day {name!r}: use {', '.join(WEEKDAYS)}")
        days.add(WEEKDAYS.index(name))
    return frozenset(days)
