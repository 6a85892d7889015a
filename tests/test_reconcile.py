"""Reconciliation: an ambiguous call is resolved against OVH's records before anything is resent.

Also what a Redis outage does to a call whose answer is known: it is settled when Redis is back,
never turned into ``unknown``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from contracts import CreditUsage, SmsProducer
from devstack.embedded_redis import EmbeddedRedis
from tests.helpers import read_events
from tests.waiting import wait_until
from worker.app import App, build_app
from worker.settings import Settings


def reconciler_calls(app: App) -> int:
    return sum(r.calls for r in app.reconcilers)


def test_an_accepted_call_whose_answer_was_lost_is_found_with_two_lookups(make_app, redis_client, sandbox) -> None:
    # Given OVH carries a code's call out, and its answer never reaches the worker
    app = make_app(ovh_read_timeout_s=1.0)
    sandbox.control.set_faults(hold_s=5)
    sandbox.control.add_fault("timeout_after_accept", next=1)
    producer = SmsProducer(client=redis_client)
    result = producer.wait(producer.send("+33612345678", "Code 1", priority="high", no_stop_clause=True), 30)
    # Then one listing of the call's window (receiver, sender) and one read of the SMS it found
    [sms] = sandbox.control.sent()
    assert result.status == "sent" and [o.ovh_id for o in result.receivers] == [sms["id"]]
    assert reconciler_calls(app) == 2
    assert len(sandbox.control.calls()) == 1


def test_a_lost_broadcast_call_costs_one_listing_and_one_read_per_sms(make_app, redis_client, sandbox) -> None:
    # Given 20 requests sharing one call, carried out by OVH, whose answer is lost
    app = make_app(ovh_read_timeout_s=1.0, linger_ms={"medium": 1000})
    sandbox.control.set_faults(hold_s=5)
    sandbox.control.add_fault("timeout_after_accept", next=1)
    producer = SmsProducer(client=redis_client)
    receivers = [f"+336{30_000_000 + n:08d}" for n in range(20)]
    ids = [producer.send(r, "Flash sale", tag="spring") for r in receivers]
    results = [producer.wait(request_id, timeout=30) for request_id in ids]
    # Then every receiver is sent with its own OVH id and credits, none twice
    by_receiver = {sms["receiver"]: sms for sms in sandbox.control.sent()}
    assert sorted(by_receiver) == sorted(receivers) and len(sandbox.control.sent()) == 20
    for receiver, result in zip(receivers, results, strict=True):
        assert result.status == "sent" and result.receivers[0].ovh_id == by_receiver[receiver]["id"]
    assert math.isclose(sum(r.credits for r in results), sandbox.control.counters()["credits_debited"])
    assert reconciler_calls(app) == 1 + 20
    assert len(sandbox.control.calls()) == 1


def test_a_call_that_never_reached_ovh_is_sent_again_once_after_the_grace_window(
    make_app, redis_client, sandbox
) -> None:
    # Given a 502 (maybe carried out; here it was not) on a three-receiver call
    app = make_app()
    sandbox.control.add_fault("502", next=1)
    producer = SmsProducer(client=redis_client)
    receivers = ["+33612345678", "+33612345679", "+33612345680"]
    request_id = producer.send(receivers, "Hello", priority="high", no_stop_clause=True)
    result = producer.wait(request_id, timeout=30)
    # Then OVH's records were read twice (at once, then after the grace window): nothing, so
    # the three were sent again, once
    assert result.status == "sent"
    assert [c["status"] for c in sandbox.control.calls()] == [502, 200]
    assert sorted(s["receiver"] for s in sandbox.control.sent()) == ["+33612345678", "+33612345679", "+33612345680"]
    assert reconciler_calls(app) == 2


def test_a_deferred_call_is_found_among_ovhs_pending_jobs(make_app, redis_client, sandbox) -> None:
    # Given a send deferred by 10 minutes whose answer is lost: OVH lists it in jobs, not outgoing
    app = make_app(ovh_read_timeout_s=1.0)
    sandbox.control.set_faults(hold_s=5)
    sandbox.control.add_fault("timeout_after_accept", next=1)
    producer = SmsProducer(client=redis_client)
    result = producer.wait(producer.send("+33612345678", "Later", priority="high", differed_period=10), 30)
    # Then it is found there, and not sent again
    [sms] = sandbox.control.sent()
    assert result.status == "sent" and [o.ovh_id for o in result.receivers] == [sms["id"]]
    assert len(sandbox.control.calls()) == 1
    assert reconciler_calls(app) == 3  # outgoing (nothing there), the pending jobs, the job's read


def test_unreadable_records_end_unknown_only_after_the_deadline(make_app, redis_client, sandbox) -> None:
    # Given a 500 on the call, then OVH answering nothing but 503 for a while
    make_app(reconcile_deadline_s=2.0, retry_attempts=1, reconcile_grace_s=5.0)
    sandbox.control.add_fault("500", next=1)
    producer = SmsProducer(client=redis_client)
    request_id = producer.send("+33612345678", "Hello", priority="high")
    wait_until(lambda: sandbox.control.calls(), timeout=10, what="the call answered 500", every=0.01)
    sandbox.control.add_fault("503", probability=1.0, scope="all")
    result = producer.wait(request_id, timeout=30)
    sandbox.control.clear_faults()
    # Then the receiver ends unknown with the reason, its credits kept as spent (OVH may have taken them)
    assert result.status == "unknown"
    assert result.error is not None and result.error.code == "outcome_unknown"
    assert "could not be read before the reconciliation deadline" in (result.receivers[0].reason or "")
    [usage] = [e for e in read_events(redis_client) if isinstance(e, CreditUsage)]
    assert usage.credits_unconfirmed == usage.credits_reserved == 1 and usage.credits_used == 0


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, which it may pause (append-only file on)."""
    server = EmbeddedRedis(appendonly=True).start()
    yield server
    server.stop()


def app_on(server: EmbeddedRedis, sandbox: Any, **overrides: Any) -> App:
    values: dict[str, Any] = {
        "redis_url": server.url,
        "ovh_endpoint": sandbox.base_url,
        "service_name": sandbox.service_name,
        "sender": "SANDBOX",
        "rate_limit": 100.0,
        "rate_limit_burst": 10,
        "poll_ms": 200,
        "reconcile_grace_s": 0.5,
    }
    return build_app(Settings(**{**values, **overrides}), ovh_credentials=sandbox.credentials).start()


@pytest.mark.parametrize("lease_s", [30.0, 3.0], ids=["lease-survives", "lease-lost"])
def test_an_answer_that_comes_back_while_redis_is_gone_is_not_lost(private_redis, sandbox, lease_s) -> None:
    # Given OVH takes 2 s to answer a code's call
    app = app_on(private_redis, sandbox, lease_s=lease_s)
    try:
        sandbox.control.set_faults(latency_ms=2000)
        producer = SmsProducer(private_redis.url)
        request_id = producer.send("+33612345678", "Your code is 1234", priority="high", no_stop_clause=True)
        wait_until(lambda: sandbox.control.calls(), timeout=10, what="the call to reach OVH", every=0.02)
        # When Redis stops answering during the call, for longer than a socket timeout (and, in
        # the second case, than the worker's lease)
        private_redis.pause()
        time.sleep(8.0)  # the outage's length
        private_redis.resume()
        sandbox.control.set_faults(latency_ms=0)
        # Then the call's known answer is applied once Redis is back: sent, one SMS, no lookup
        # (the owner settles; or, when its lease expired meanwhile, the answer it recorded)
        result = producer.wait(request_id, timeout=30)
        [sms] = sandbox.control.sent()
        assert result.status == "sent" and [o.ovh_id for o in result.receivers] == [sms["id"]]
        assert len(sandbox.control.calls()) == 1
        assert reconciler_calls(app) == 0
    finally:
        private_redis.resume()
        app.stop()


def test_intake_rides_out_a_redis_outage(private_redis, sandbox) -> None:
    # Given 2,000 requests queued
    app = app_on(private_redis, sandbox, linger_ms={"medium": 200})
    try:
        producer = SmsProducer(private_redis.url)
        receivers = [f"+336{40_000_000 + n:08d}" for n in range(2000)]
        request_ids = producer.send(receivers, "Flash sale", request_id="outage")
        # When Redis stops answering for 8 s while they are being accepted
        private_redis.pause()
        time.sleep(8.0)
        private_redis.resume()
        # Then every receiver gets exactly one SMS and the send its result
        result = producer.wait(request_ids, timeout=60)
        assert result.status == "sent" and len(result.receivers) == 2000
        assert sorted(s["receiver"] for s in sandbox.control.sent()) == receivers
    finally:
        private_redis.resume()
        app.stop()
