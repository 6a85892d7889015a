"""How each OVH answer is classified: the HTTP status before the body, OVH's clock read first,
and every background call under the shared rate limiter."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from contracts import SmsProducer
from worker.accounting.credits import AccountBalance, RateTable, RateUnknown
from worker.accounting.refresher import Refresher
from worker.attempts.reconcile import may_be_pending
from worker.errors import RetryableError
from worker.ovhcloud.background_calls import BackgroundCalls
from worker.ovhcloud.client import make_client
from worker.ovhcloud.gateway import OvhGateway
from worker.ovhcloud.rate_limit import BACKGROUND_LANE, LOOKUP_LANE, RateLimiter


@pytest.mark.parametrize("kind", ["proxy_503", "proxy_429"])
def test_a_proxy_error_page_is_retried_like_the_status_it_carries(make_app, redis_client, sandbox, kind) -> None:
    # Given a load balancer in front of OVH answering 503 or 429 with an HTML page
    app = make_app(rate_limit=50.0)
    sandbox.control.add_fault(kind, next=1, retry_after=0)
    producer = SmsProducer(client=redis_client)
    # When a code is sent
    result = producer.wait(producer.send("+33612345678", "Code", priority="high", no_stop_clause=True), 30)
    # Then it was "surely not carried out": retried, sent once, never reconciled
    assert result.status == "sent"
    assert [c["status"] for c in sandbox.control.calls()] == [int(kind[-3:]), 200]
    assert len(sandbox.control.sent()) == 1
    assert sum(r.calls for r in app.reconcilers) == 0
    if kind == "proxy_429":  # and a 429 slows the shared rate down, whatever its body
        assert app.dispatchers[0].limiter.current_rate() < 50.0


def test_ovhs_clock_is_read_before_the_first_call_and_a_failure_there_is_not_ambiguous(sandbox) -> None:
    # Given OVH's clock cannot be read (the first request of a new client is reset)
    gateway = OvhGateway(lambda: make_client(sandbox.base_url, **sandbox.credentials))
    sandbox.control.add_fault("reset", next=1, scope="all")
    body = {"message": "Hi", "sender": "SANDBOX", "receivers": ["+33612345678"], "noStopClause": True}
    # When a jobs call is made, it fails as "surely not sent" (the POST never left)
    with pytest.raises(RetryableError, match="OVH's clock"):
        gateway.send_job(sandbox.service_name, None, body)
    assert sandbox.control.calls() == []
    # and the next try reads the clock, then sends
    assert gateway.send_job(sandbox.service_name, None, body)["validReceivers"] == ["+33612345678"]


def test_a_first_rate_takes_a_lookup_slot_and_refreshes_take_background_slots(redis_client, sandbox) -> None:
    # Given the refresher's lookups behind a limiter of their own, rates read again once read
    grants: list = []
    limiter = RateLimiter(redis_client, key="refresher-test", rate_per_s=50, burst=5, on_grant=grants.append)
    calls = BackgroundCalls(OvhGateway(lambda: make_client(sandbox.base_url, **sandbox.credentials)), limiter)
    rates = RateTable(redis_client, ttl_s=0)
    balance = AccountBalance(refresh_s=60)
    refresher = Refresher(rates, balance, calls)
    with pytest.raises(RateUnknown):
        rates.rate("de")
    balance.credits_left(sandbox.service_name)
    # When it refreshes what the accept path asked for: a destination nobody priced, a balance
    refresher.refresh()
    # Then the rate requests wait for took a slot of the lane above the bulk lanes, the balance
    # one of the lane below every send lane
    assert balance.credits_left(sandbox.service_name) is not None
    assert [g.lane for g in grants] == [LOOKUP_LANE, BACKGROUND_LANE]
    # and reading a rate known already, but old, takes a background slot
    assert rates.rate("de") == 2.0
    refresher.refresh()
    assert [g.lane for g in grants] == [LOOKUP_LANE, BACKGROUND_LANE, BACKGROUND_LANE]


@pytest.mark.parametrize(
    ("when", "commercial", "differed", "pending"),
    [
        ("2026-11-23T14:00", True, 0, False),  # a Monday afternoon: sent at once
        ("2026-11-23T23:30", True, 0, True),  # at night: held until the morning
        ("2026-11-22T14:00", True, 0, True),  # a Sunday
        ("2026-11-23T23:30", False, 0, False),  # not commercial: never held
        ("2026-11-23T14:00", False, 5, True),  # deferred
        ("2026-11-23T20:30", True, 0, True),  # after 20:00, OVH's current rule (older material said 22:00)
        ("2026-07-14T14:00", True, 0, True),  # a French public holiday (a Tuesday)
        ("2026-11-21T14:00", True, 0, True),  # a Saturday: OVH's guides disagree; assume it may be held
        ("2026-07-14T14:00", False, 0, False),  # not commercial: never held
    ],
)
def test_which_calls_may_wait_in_ovhs_pending_jobs(when, commercial, differed, pending) -> None:
    called = datetime.fromisoformat(when).replace(tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    body = {"noStopClause": not commercial, "differedPeriod": differed}
    assert may_be_pending(body, called) is pending
