"""Quiet hours: the French default rule, its configuration, and what the worker derives from it."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from worker.quiet_hours import QuietHours, QuietHoursError, parse_days, parse_window
from worker.settings import Settings

PARIS = ZoneInfo("Europe/Paris")
FRENCH = QuietHours()


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("when", "held_until"),
    [
        (paris(2025, 6, 7, 19, 59), None),  # a Saturday 19:59: allowed
        (paris(2025, 6, 7, 20, 0), paris(2025, 6, 10, 8, 0)),  # Saturday night, Sunday, Whit Monday: Tuesday 08:00
        (paris(2025, 6, 14, 20, 0), paris(2025, 6, 16, 8, 0)),  # an ordinary Saturday night: Monday 08:00
        (paris(2025, 6, 15, 12, 0), paris(2025, 6, 16, 8, 0)),  # a Sunday noon
        (paris(2025, 7, 14, 10, 0), paris(2025, 7, 15, 8, 0)),  # Bastille Day, a Monday
        (paris(2025, 7, 13, 21, 0), paris(2025, 7, 15, 8, 0)),  # the Sunday evening before it
        (paris(2025, 6, 17, 7, 59), paris(2025, 6, 17, 8, 0)),  # a Tuesday before 08:00: that morning
        (paris(2025, 6, 17, 23, 0), paris(2025, 6, 18, 8, 0)),  # a Tuesday 23:00
        (paris(2025, 6, 17, 8, 0), None),  # 08:00 sharp: allowed
        (paris(2025, 10, 25, 21, 0), paris(2025, 10, 27, 8, 0)),  # across the end of summer time
    ],
)
def test_french_rule_holds_commercial_sends_until_the_next_open_morning(when: datetime, held_until: datetime) -> None:
    assert FRENCH.held_until(when, commercial=True) == held_until
    assert FRENCH.allowed(when) is (held_until is None)


def test_a_non_commercial_send_is_never_held() -> None:
    for when in (paris(2025, 6, 17, 23, 0), paris(2025, 6, 15, 12, 0), paris(2025, 7, 14, 10, 0)):
        assert FRENCH.held_until(when, commercial=False) is None


def test_the_rule_reads_french_time_whatever_the_zone_given() -> None:
    # 18:30 UTC on a summer Tuesday is 20:30 in Paris.
    utc = datetime(2025, 6, 17, 18, 30, tzinfo=ZoneInfo("UTC"))
    assert FRENCH.next_allowed(utc) == paris(2025, 6, 18, 8, 0)


def test_next_allowed_is_always_allowed_and_never_earlier() -> None:
    start = paris(2025, 12, 20, 0, 7)  # two weeks over Christmas and New Year, every 50 minutes
    for step in range(0, 14 * 24 * 60, 50):
        when = start + timedelta(minutes=step)
        found = FRENCH.next_allowed(when)
        assert found >= when and FRENCH.allowed(found)


def test_settings_configure_the_rule() -> None:
    settings = Settings(
        quiet_hours_window="21:00-09:00",
        quiet_hours_closed_days="sat,sun",
        quiet_hours_holidays="FR-57",  # Alsace-Moselle: Good Friday and St Stephen's Day too
        quiet_hours_timezone="Europe/Paris",
    )
    rule = settings.quiet_hours()
    assert (rule.start, rule.end, rule.closed_days) == (time(21), time(9), frozenset({5, 6}))
    assert not rule.allowed(paris(2025, 12, 26, 12, 0))  # St Stephen's Day in Moselle
    assert FRENCH.allowed(paris(2025, 12, 26, 12, 0))  # an ordinary Friday elsewhere
    assert rule.next_allowed(paris(2025, 6, 13, 21, 0)) == paris(2025, 6, 16, 9, 0)
    assert not Settings(quiet_hours_enabled=False).quiet_hours().held_until(paris(2025, 6, 15, 3, 0), commercial=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: parse_window("8pm-8am"),
        lambda: parse_days("sun,funday"),
        lambda: QuietHours(timezone="Mars/Olympus"),
        lambda: QuietHours(country="XX"),
        lambda: QuietHours(closed_days=frozenset(range(7))),
    ],
)
def test_a_rule_that_cannot_be_used_is_refused_with_a_reason(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(QuietHoursError):
        make()
