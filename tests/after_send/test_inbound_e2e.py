"""End to end: 1,000 SMS through the worker, the sandbox calling ``sms-worker inbound`` back.

Every part is real: Redis, the sandbox over HTTP (its callbacks too), python-ovh, the worker,
the inbound service in its own process, ``sms-worker callbacks setup`` as a user runs it.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from contracts import DeliveryReport, OptOut, SmsProducer
from tests.after_send.conftest import TOKEN, callbacks_setup
from tests.helpers import read_events
from tests.waiting import wait_until
from worker.ovhcloud.client import make_client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SN = "sms-sandbox-1"
RECEIVERS = [f"+336{20_000_000 + n:08d}" for n in range(1000)]
#: One receiver in twenty fails, with one of these ptt codes (expired, unknown, failures).
FAILING = {number: (8, 6, 23, 24, 27)[n % 5] for n, number in enumerate(RECEIVERS[::20])}


def delivery_reports(redis_client) -> list[DeliveryReport]:
    return [e for e in read_events(redis_client) if isinstance(e, DeliveryReport)]


def assert_one_final_report_each(reports: list[DeliveryReport]) -> None:
    """Per SMS: exactly one final report, no status published twice, nothing after the final.
    (OVH's callbacks are unordered: the sandbox sends each SMS's final receipt first, from four
    threads, so the earlier receipt sometimes still arrives first, and is then rightly published.)"""
    assert Counter(r.ovh_id for r in reports if r.final) == {n: 1 for n in {r.ovh_id for r in reports}}
    assert max(Counter((r.ovh_id, r.status) for r in reports).values()) == 1
    final_at = {r.ovh_id: i for i, r in enumerate(reports) if r.final}
    assert all(i < final_at[r.ovh_id] for i, r in enumerate(reports) if not r.final), "a report after the final"
    assert len(final_at) == 1000


def send_all(producer: SmsProducer) -> list[str]:
    """The 1,000 receivers in 10 requests of 100; every other request commercial."""
    return [
        producer.send(RECEIVERS[n : n + 100], f"Batch {n // 100}: your parcel ships today", no_stop_clause=n % 200 == 0)
        for n in range(0, 1000, 100)
    ]


def finals_of(reports: list[DeliveryReport], request_ids: list[str]) -> dict[str, DeliveryReport]:
    return {r.receiver: r for r in reports if r.final and r.request_id in request_ids}


def test_reports_replies_and_stop_end_to_end(make_app, redis_client, sandbox, start_inbound, sandbox_env) -> None:
    # Given the inbound service, and OVH's callbacks pointed at it as a user would do it
    inbound = start_inbound()
    setup = callbacks_setup({**sandbox_env, "SMS_WORKER_INBOUND_TOKEN": TOKEN}, "--url", inbound.base)
    assert setup.returncode == 0, setup.stderr
    # and OVH sending every callback twice, each SMS's final receipt before the earlier one
    sandbox.control.set_callbacks(duplicates=1, reorder=True)
    sandbox.control.set_failing_receivers(FAILING)
    make_app()
    producer = SmsProducer(client=redis_client)

    # When 1,000 SMS go through the worker
    pushed = send_all(producer)
    assert {producer.wait(r, timeout=60).status for r in pushed} == {"sent"}

    # Then each receiver gets exactly one final report, equal to the sandbox's final status
    push = wait_until(lambda: len(found := finals_of(delivery_reports(redis_client), pushed)) == 1000 and found, 120)
    receipts = {r["receiver"]: r for r in sandbox.control.receipts()}
    assert all(receipts[n]["final"] for n in RECEIVERS)
    for number, report in push.items():
        assert (report.ptt, report.source) == (receipts[number]["ptt"], "callback")
        assert report.ovh_id == receipts[number]["id"]
    assert Counter(r.status for r in push.values()) == {
        "delivered": 950,
        "expired": 10,
        "unknown": 10,
        "failed": 30,
    }
    # and duplicated and reordered callbacks changed nothing: 4 callbacks per SMS, one report
    wait_until(lambda: len([c for c in sandbox.control.callbacks() if c["kind"] == "delivery"]) == 4000)
    reports = delivery_reports(redis_client)
    assert_one_final_report_each(reports)
    # (played again, all of them, at once: still nothing new)
    replay = [(c["url"], c["params"]) for c in sandbox.control.callbacks() if c["kind"] == "delivery"]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda call: requests.get(call[0], params=call[1], timeout=10).status_code, replay))
    assert set(statuses) == {200}
    assert len(delivery_reports(redis_client)) == len(reports)

    # When forged callbacks (a wrong token, real ids) and a forged STOP arrive
    published = len(read_events(redis_client))
    forged = inbound.url("delivery", token="not-the-token-0123456789")
    for number in RECEIVERS[:50]:
        answer = requests.get(forged, params={"id": receipts[number]["id"], "ptt": 23, "dlr": 2}, timeout=5)
        assert answer.status_code == 404
    forged_stop = inbound.url("stop", token=TOKEN[::-1])
    assert requests.get(forged_stop, params={"senderid": RECEIVERS[1]}, timeout=5).status_code == 404
    # Then no event was published
    assert len(read_events(redis_client)) == published

    # When a receiver of a commercial SMS answers STOP (OVH posts the reply and calls stopCallBack)
    stopper = RECEIVERS[101]  # in the second request, a commercial one
    sandbox.control.reply(SN, stopper, "STOP")
    optout = wait_until(lambda: [e for e in read_events(redis_client) if isinstance(e, OptOut)])
    assert (optout[0].number, optout[0].request_id) == (stopper, pushed[1])  # via the reply or stopCallBack
    # Then the next commercial send to it is blocked, and a non-commercial one is not
    promo = producer.wait(producer.send([stopper, RECEIVERS[2]], "Sale today"), timeout=30)
    notice = producer.wait(producer.send(stopper, "Your parcel is delayed", no_stop_clause=True), timeout=30)
    assert {o.receiver: o.status for o in promo.receivers} == {stopper: "blacklisted", RECEIVERS[2]: "sent"}
    assert notice.status == "sent"
    assert len([e for e in read_events(redis_client) if isinstance(e, OptOut)]) == 1  # reply + stopCallBack: one

    # When the same 1,000 SMS are sent again (but to the STOP) with OVH calling nobody back, and
    # the worker polling
    client = make_client(sandbox.base_url, **sandbox.credentials)
    client.put(f"/sms/{SN}", callBack="")
    for login in client.get(f"/sms/{SN}/users"):
        client.put(f"/sms/{SN}/users/{login}", callBack="")
    make_app(delivery_mode="pull", pull_spacing_s=0.3, pull_calls_per_min=100_000)
    wait_until(lambda: redis_client.exists("sms-worker:pull"))
    pulled_ids = send_all(producer)
    assert {producer.wait(r, timeout=60).status for r in pulled_ids} == {"sent"}
    # Then pull mode gives each receiver the same final report as push did
    pull = wait_until(lambda: len(found := finals_of(delivery_reports(redis_client), pulled_ids)) == 999 and found, 120)
    assert {r.source for r in pull.values()} == {"poll"} and set(pull) == set(RECEIVERS) - {stopper}

    def essence(report: DeliveryReport) -> tuple:
        # (ptt_description may differ in words: the built-in table's until OVH's own is cached)
        return (report.status, report.final, report.ptt, report.permanent, report.ptt_description is None)

    assert {n: essence(r) for n, r in pull.items()} == {n: essence(r) for n, r in push.items() if n != stopper}
