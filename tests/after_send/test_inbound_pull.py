"""Pull mode: the worker polls OVH for receipts and incoming SMS; the same events come out."""

from __future__ import annotations

import time

import pytest

from contracts import DeliveryReport, IncomingSms, OptOut, SmsProducer
from tests.helpers import read_events
from tests.waiting import wait_until
from worker.store import keys

pytestmark = pytest.mark.timeout(180)

SN = "sms-sandbox-1"
#: Receivers whose SMS fail, and how (ptt): expired, unknown, permanently and temporarily failed.
FAILING = {"+33600000003": 8, "+33600000006": 6, "+33600000009": 23, "+33600000012": 24}


def pull_app(make_app, redis_client, **settings):
    # (incoming SMS are read every half second: a budget that does not hold the receipts back)
    defaults = {"delivery_mode": "pull", "pull_spacing_s": 0.3, "pull_incoming_s": 0.5, "pull_calls_per_min": 10_000}
    app = make_app(**{**defaults, **settings})
    wait_until(lambda: redis_client.exists(keys.PULL))  # the poller runs: settle indexes what it records
    return app


def finals(redis_client, queue: str = "sms-results") -> dict[str, DeliveryReport]:
    return {e.receiver: e for e in read_events(redis_client, queue) if isinstance(e, DeliveryReport) and e.final}


def test_receipts_are_polled_until_final(make_app, redis_client, sandbox) -> None:
    # Given a worker in pull mode, and an account with no callback at all
    pull_app(make_app, redis_client)
    sandbox.control.set_failing_receivers(FAILING)
    receivers = [f"+336000000{n:02d}" for n in range(30)]
    # When 30 SMS are sent
    producer = SmsProducer(client=redis_client)
    result = producer.wait(producer.send(receivers, "Your parcel is on its way", no_stop_clause=True), timeout=30)
    assert result.status == "sent"
    # Then each receiver gets one final report, equal to what OVH says
    reports = wait_until(lambda: (found := finals(redis_client)) and len(found) == 30 and found, timeout=60)
    receipts = {r["receiver"]: r for r in sandbox.control.receipts()}
    for receiver, report in reports.items():
        assert (report.ptt, report.source, report.request_id) == (receipts[receiver]["ptt"], "poll", result.request_id)
    assert {r: reports[r].status for r in FAILING} == {
        "+33600000003": "expired",
        "+33600000006": "unknown",
        "+33600000009": "failed",
        "+33600000012": "failed",
    }
    assert (reports["+33600000009"].permanent, reports["+33600000012"].permanent) == (True, False)
    # and polling stops with the final receipts
    wait_until(lambda: redis_client.zcard(keys.RECEIPTS) == 0)
    assert len([e for e in read_events(redis_client) if isinstance(e, DeliveryReport) and e.final]) == 30


def test_polling_keeps_to_its_budget(make_app, redis_client, sandbox) -> None:
    # Given a budget of 3 OVH calls a minute (the budget is per clock minute: start with 20 s of it left)
    wait_until(lambda: time.time() % 60 < 40, timeout=25, what="a clock minute with 20 s left", every=0.2)
    # (incoming SMS are read once, at start: one call of the budget)
    pull_app(make_app, redis_client, pull_calls_per_min=3, pull_incoming_s=3600)
    producer = SmsProducer(client=redis_client)
    producer.wait(producer.send([f"+336100000{n:02d}" for n in range(10)], "Hi", no_stop_clause=True), timeout=30)
    # Then 2 receipts are read this minute, the others wait for the next one
    wait_until(lambda: len(finals(redis_client)) == 2)
    assert redis_client.zcard(keys.RECEIPTS) == 8
    assert int(redis_client.get(keys.pull_budget(int(time.time() // 60)))) > 3  # asked, and refused
    assert len(finals(redis_client)) == 2


def test_incoming_stop_is_polled_and_blocks_the_next_commercial_send(make_app, redis_client, sandbox) -> None:
    # Given a worker in pull mode that sent a promotion to FR
    fr = "+33612345678"
    pull_app(make_app, redis_client)
    producer = SmsProducer(client=redis_client)
    first = producer.wait(producer.send(fr, "Sale today", tag="promo"), timeout=30)
    wait_until(lambda: fr in finals(redis_client))
    # When FR answers STOP (OVH records it in GET .../incoming; nobody is called back)
    sandbox.control.reply(SN, fr, "STOP")
    # Then the worker reads it: one IncomingSms and one OptOut, tied to the promotion
    optout = wait_until(lambda: [e for e in read_events(redis_client) if isinstance(e, OptOut)])
    [incoming] = [e for e in read_events(redis_client) if isinstance(e, IncomingSms)]
    assert (incoming.stop, incoming.source, incoming.request_id) == (True, "poll", first.request_id)
    assert (optout[0].number, optout[0].request_id, optout[0].source) == (fr, first.request_id, "poll")
    # and the next promotion to FR is not sent, while a notification is
    again = producer.wait(producer.send(fr, "Another sale"), timeout=30)
    notice = producer.wait(producer.send(fr, "Your parcel", no_stop_clause=True), timeout=30)
    assert (again.status, notice.status) == ("rejected", "sent")
    # (a few more incoming polls, each moving the cursor: the reply is not published again)
    polled = float(redis_client.get(keys.incoming_cursor(SN)))
    wait_until(lambda: float(redis_client.get(keys.incoming_cursor(SN))) > polled + 1, what="more incoming polls")
    assert len([e for e in read_events(redis_client) if isinstance(e, IncomingSms)]) == 1
