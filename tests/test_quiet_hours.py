"""Quiet hours: the French default rule, its configuration, and what the worker derives from it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from contracts import SmsProducer
from tests.waiting import wait_until
from worker.app import App, build_app
from worker.quiet_hours import QuietHours, QuietHoursError, parse_days, parse_window
from worker.settings import Settings
from worker.store import keys

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
    assert (rule.start, rule.end, rule.closed_days) == (clock_time(21), clock_time(9), frozenset({5, 6}))
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


# -- the worker holds commercial sends itself (a controlled clock; real Redis and sandbox) -------


def clock_at(when: datetime) -> Callable[[], float]:
    """A wall clock that reads ``when`` now and runs at the real pace (Redis keeps its own time)."""
    offset = when.timestamp() - time.time()
    return lambda: time.time() + offset


@pytest.fixture
def app_at(redis_url: str, sandbox: Any) -> Iterator[Callable[[datetime], App]]:
    """Factory: a worker (quiet hours on, French rule) whose wall clock reads the given time."""
    apps: list[App] = []

    def start(when: datetime) -> App:
        settings = Settings(
            redis_url=redis_url,
            ovh_endpoint=sandbox.base_url,
            service_name=sandbox.service_name,
            sender="SANDBOX",
            linger_ms={"high": 0, "medium": 50, "low": 50, "veryLow": 50},
            poll_ms=200,
            rate_limit=100.0,
            rate_limit_burst=10,
        )
        app = build_app(settings, ovh_credentials=sandbox.credentials, clock=clock_at(when)).start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.stop()


def _due_ms(client: redis.Redis, lane: str) -> list[float]:
    return [score for _, score in client.zrange(keys.due(lane), 0, -1, withscores=True)]


def test_a_commercial_send_on_saturday_at_19_59_goes_at_once(app_at, sandbox, redis_url) -> None:
    app_at(paris(2025, 6, 7, 19, 59))
    producer = SmsProducer(redis_url)
    result = producer.wait(producer.send("+33612345678", "Sale tonight", priority="medium"), timeout=30)
    assert result.status == "sent" and result.deferred_until is None


@pytest.mark.parametrize(
    ("now", "goes_at"),
    [
        (paris(2025, 6, 15, 12, 0), paris(2025, 6, 16, 8, 0)),  # a Sunday
        (paris(2025, 7, 14, 10, 0), paris(2025, 7, 15, 8, 0)),  # Bastille Day
        (paris(2025, 6, 7, 20, 0), paris(2025, 6, 10, 8, 0)),  # Saturday 20:00 before Whit Monday
    ],
)
def test_a_commercial_send_in_the_quiet_hours_is_held_by_the_worker_and_a_code_is_not(
    app_at, sandbox, redis_url, redis_client, now: datetime, goes_at: datetime
) -> None:
    # Given a worker whose clock reads a closed time
    app_at(now)
    producer = SmsProducer(redis_url)
    # When a commercial send and a one-time code arrive
    held = producer.send("+33612345678", "Sale this week", priority="medium")
    code = producer.send("+33612345679", "Your code is 1234", priority="high", no_stop_clause=True)
    # Then the code goes at once
    assert producer.wait(code, timeout=30).status == "sent"
    # And the commercial send is staged, due when the quiet hours end (not handed to OVH)
    wait_until(lambda: _due_ms(redis_client, "medium"), timeout=30)
    [due_ms] = _due_ms(redis_client, "medium")
    expected_ms = (time.time() + (goes_at - now).total_seconds()) * 1000
    assert abs(due_ms - expected_ms) < 60_000
    assert [s["receiver"] for s in sandbox.control.sent()] == ["+33612345679"]
    assert producer.result(held) is None  # no interim result: its one result comes when it is sent


def test_a_held_send_goes_when_the_quiet_hours_end_and_its_result_says_it_was_held(app_at, sandbox, redis_url) -> None:
    # Given a worker whose clock reads Monday 07:59:58 (a second and a bit before the window's end)
    app_at(paris(2025, 6, 16, 7, 59, 58))
    producer = SmsProducer(redis_url)
    # When a commercial send arrives, then Then it is sent at 08:00 and says it was held until then
    result = producer.wait(producer.send("+33612345678", "Sale this week", priority="medium"), timeout=30)
    assert result.status == "sent"
    assert result.deferred_until == paris(2025, 6, 16, 8, 0).timestamp()


def test_a_code_at_23_00_goes_at_once(app_at, sandbox, redis_url) -> None:
    app_at(paris(2025, 6, 17, 23, 0))
    producer = SmsProducer(redis_url)
    started = time.monotonic()
    result = producer.wait(producer.send("+33612345678", "Code 9876", priority="high", no_stop_clause=True))
    assert result.status == "sent" and result.deferred_until is None
    assert time.monotonic() - started < 10  # not held: nothing near the 9 hours to the window's end
