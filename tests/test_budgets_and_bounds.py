"""Retries within a time budget per lane, and pull mode's receipt index bounded (issue 16, item 8)."""

from __future__ import annotations

from contracts import SmsProducer
from worker.store import keys


def test_a_call_refused_with_503_for_a_while_is_retried_within_its_lanes_budget(
    make_app, redis_client, sandbox
) -> None:
    # Given OVH answering 503 to the next six tries of a call (each saying "retry now")
    make_app()
    sandbox.control.add_fault("503", next=6, retry_after=0)
    producer = SmsProducer(client=redis_client)
    # When a notification is sent on the medium lane (its budget is minutes, not five tries)
    result = producer.wait(producer.send("+33612345678", "Your parcel is here", no_stop_clause=True), 60)
    # Then it went out on the seventh try (before: failed after a fixed five)
    assert result.status == "sent"
    assert [c["status"] for c in sandbox.control.calls()] == [503] * 6 + [200]
    assert len(sandbox.control.sent()) == 1


def test_a_code_stops_retrying_when_the_high_lanes_budget_is_spent(make_app, redis_client, sandbox) -> None:
    # Given a high lane whose retries may last 1 s, and OVH refusing with 429, "retry in 2 s"
    make_app(retry_budget_s={"high": 1.0}, retry_max_wait_s=5.0)
    sandbox.control.add_fault("429", probability=1.0, retry_after=2)
    producer = SmsProducer(client=redis_client)
    result = producer.wait(producer.send("+33612345678", "Code 1", priority="high", no_stop_clause=True), 30)
    # Then it fails at once rather than wait past its budget: one try, failed, nothing sent
    assert result.status == "failed"
    assert [c["status"] for c in sandbox.control.calls()] == [429]
    assert sandbox.control.sent() == []


def test_pull_modes_receipt_index_keeps_at_most_its_bound(make_app, redis_client, sandbox) -> None:
    # Given pull mode's receipt index bounded to 5 SMS, while a receipt poller runs
    make_app(pull_max_pending=5, linger_ms={"medium": 500})
    redis_client.hset(keys.PULL, "first_poll_delay_ms", 60_000)
    producer = SmsProducer(client=redis_client)
    # When 20 SMS are sent faster than receipts are polled
    ids = producer.send([f"+3361234{n:04d}" for n in range(20)], "Flash sale")
    assert producer.wait(ids, 30).status == "sent"
    # Then the index holds the 5 newest, and the 15 oldest dropped are counted
    assert redis_client.zcard(keys.RECEIPTS) == 5
    newest = sorted(s["id"] for s in sandbox.control.sent())[-5:]
    assert sorted(int(m) for m in redis_client.zrange(keys.RECEIPTS, 0, -1)) == newest
    assert int(redis_client.hget(keys.STATS, "dropped:receipts") or 0) == 15
