"""The shared rate limit and lane priority, seen from the sandbox (counts, not timings)."""

from __future__ import annotations

import time
from collections import Counter

from contracts import SendResult, SmsProducer
from tests.helpers import read_events
from tests.waiting import wait_until


def max_calls_in_one_second(times: list[float]) -> int:
    """Most jobs calls that arrived within any one-second window (both ends included)."""
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_three_processes_never_exceed_the_shared_limit(worker_processes, redis_client, sandbox) -> None:
    # Given 3 worker processes sharing a limit of 10 calls/s with a burst of 2
    worker_processes(
        3,
        "--threads",
        "4",
        "--dispatchers",
        "3",
        SMS_WORKER_RATE_LIMIT="10",
        SMS_WORKER_RATE_LIMIT_BURST="2",
        SMS_WORKER_LINGER_MS__LOW="0",
    )
    # When 60 requests with unique texts (one jobs call each) arrive at once
    producer = SmsProducer(client=redis_client)
    request_ids = [
        producer.send(f"+336{50_000_000 + n:08d}", f"Your code is {n:06d}", priority="low") for n in range(60)
    ]
    results = [producer.wait(request_id, timeout=60) for request_id in request_ids]
    # Then every request was sent once, and no one-second window at OVH held more than 10 + 2 calls
    assert {r.status for r in results} == {"sent"}
    calls = sandbox.control.calls()
    assert len(calls) == 60
    assert max_calls_in_one_second([c["time"] for c in calls]) <= 12


def test_a_code_overtakes_a_saturating_campaign(make_app, redis_client, sandbox) -> None:
    # Given a campaign of unique texts that keeps the rate limit (4 calls/s) saturated
    make_app(rate_limit=4.0, rate_limit_burst=1, dispatchers=4, linger_ms={"low": 0})
    producer = SmsProducer(client=redis_client)
    campaign = [producer.send(f"+336{60_000_000 + n:08d}", f"Offer {n}", priority="low") for n in range(40)]
    wait_until(lambda: len(sandbox.control.calls()) >= 4, timeout=10, what="the campaign's first calls", every=0.01)
    # When a one-time code arrives
    code_sent_at = time.time()
    code = producer.send("+33612345678", "Your code is 482913", priority="high", no_stop_clause=True)
    assert producer.wait(code, timeout=30).status == "sent"
    assert {producer.wait(r, timeout=60).status for r in campaign} == {"sent"}
    # Then at most the one bulk call already granted before it reached OVH between the two
    calls = sandbox.control.calls()
    code_call = next(c for c in calls if c["receivers"] == 1 and c["time"] >= code_sent_at and _is_code(sandbox, c))
    overtaken = [c for c in calls if code_sent_at <= c["time"] < code_call["time"] and c is not code_call]
    assert len(overtaken) <= 1
    bulk_left = [c for c in calls if c["time"] > code_call["time"]]
    assert bulk_left, "the campaign was still running when the code went out"


def _is_code(sandbox, call) -> bool:
    return any(s["call_id"] == call["call_id"] and s["receiver"] == "+33612345678" for s in sandbox.control.sent())


def test_a_429_storm_slows_the_worker_and_loses_nothing(make_app, redis_client, sandbox) -> None:
    # Given OVH answers 429 to most calls for a while
    app = make_app(rate_limit=20.0, rate_limit_burst=2, retry_attempts=20, linger_ms={"medium": 0})
    sandbox.control.add_fault("429", next=6, retry_after=0)
    producer = SmsProducer(client=redis_client)
    receivers = [f"+336{70_000_000 + n:08d}" for n in range(30)]
    request_ids = [producer.send(r, f"Notice {n}") for n, r in enumerate(receivers)]
    # Then the shared rate has dropped once the storm is over
    wait_until(
        lambda: Counter(c["status"] for c in sandbox.control.calls())[429] >= 6, timeout=30, what="6 429s", every=0.01
    )
    assert app.dispatchers[0].limiter.current_rate() <= 20.0 / 2**3  # halved per round of 429s
    # and every request still ended in exactly one result, sent once
    results = [producer.wait(request_id, timeout=60) for request_id in request_ids]
    assert {r.status for r in results} == {"sent"}
    assert Counter(s["receiver"] for s in sandbox.control.sent()) == Counter(receivers)
    published = [e.request_id for e in read_events(redis_client) if isinstance(e, SendResult)]
    assert Counter(published) == Counter(request_ids)
    assert Counter(c["status"] for c in sandbox.control.calls())[429] == 6


def test_an_ambiguous_code_is_reconciled_while_a_campaign_saturates_the_limit(make_app, redis_client, sandbox) -> None:
    # Given a campaign of unique texts that keeps the rate limit (4 calls/s) saturated for 20 s
    make_app(rate_limit=4.0, rate_limit_burst=1, dispatchers=4, linger_ms={"low": 0}, ovh_read_timeout_s=1.0)
    sandbox.control.set_faults(hold_s=3)
    producer = SmsProducer(client=redis_client)
    campaign = [producer.send(f"+336{61_000_000 + n:08d}", f"Offer {n}", priority="low") for n in range(80)]
    deadline = time.monotonic() + 10
    while len(sandbox.control.calls()) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    # When a one-time code's call is carried out by OVH but its answer never comes back
    number = "+33612345670"
    sandbox.control.add_fault("timeout_after_accept", next=1, receiver=number)
    result = producer.wait(producer.send(number, "Your code is 482913", priority="high", no_stop_clause=True), 60)
    calls_made = len(sandbox.control.calls())
    # Then its reconciliation found it in OVH's records while the campaign still had calls to make
    # (its lookups were not left for after the campaign)
    [sms] = sandbox.control.sent(receiver=number)
    assert result.status == "sent" and [r.ovh_id for r in result.receivers] == [sms["id"]]
    assert calls_made <= 1 + len(campaign) - 10, "the code was reconciled only once the campaign was over"
    # and the campaign went on to the end, each receiver once
    assert {producer.wait(r, timeout=60).status for r in campaign} == {"sent"}
    assert len(sandbox.control.sent()) == 1 + len(campaign)


def test_a_code_is_not_held_behind_another_codes_slow_call(make_app, redis_client, sandbox) -> None:
    # Given a slow rate (a slot every 4 s) that a campaign keeps its dispatcher waiting on, room for
    # two codes at once, and a process with one dispatcher for codes and one for every lane
    app = make_app(
        rate_limit=0.25,
        rate_limit_burst=1,
        rate_limit_headroom=2.0,
        dispatchers=2,
        linger_ms={"low": 0},
        ovh_read_timeout_s=3.0,
    )
    sandbox.control.set_faults(hold_s=5)
    producer = SmsProducer(client=redis_client)
    for n in range(3):
        producer.send(f"+336{62_000_000 + n:08d}", f"Offer {n}", priority="low")
    until_calls(sandbox, 1)
    deadline = time.monotonic() + 10
    while app.dispatchers[0].limiter.waiting("low") == 0:  # the campaign's dispatcher waits for a slot
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # When a first code's call hangs at OVH (until the worker's read timeout) and a second code comes
    first, second = "+33612345671", "+33612345672"
    sandbox.control.add_fault("timeout_after_accept", next=1, receiver=first)
    producer.send(first, "Your code is 111111", priority="high", no_stop_clause=True)
    until_calls(sandbox, 2)
    result = producer.wait(producer.send(second, "Your code is 222222", priority="high", no_stop_clause=True), 30)
    # Then the second code was sent while the first one's call still hung: the dispatcher waiting
    # for a campaign slot looked at the buffers again and took it
    assert result.status == "sent"
    assert app.attempts.ambiguous_count() == 0, "the second code waited for the first one's call to time out"
    assert [c["receivers"] for c in sandbox.control.calls()] == [1, 1, 1]


def until_calls(sandbox, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(sandbox.control.calls()) < count:
        assert time.monotonic() < deadline, f"fewer than {count} jobs calls reached the sandbox"
        time.sleep(0.01)


def test_a_code_to_a_new_country_is_not_held_behind_a_saturating_campaign(make_app, redis_client, sandbox) -> None:
    # Given a campaign of unique texts that keeps the rate limit (4 calls/s) saturated for 20 s,
    # and a worker that has not read Germany's credit rate yet
    make_app(rate_limit=4.0, rate_limit_burst=1, dispatchers=4, linger_ms={"low": 0})
    producer = SmsProducer(client=redis_client)
    campaign = [producer.send(f"+336{63_000_000 + n:08d}", f"Offer {n}", priority="low") for n in range(80)]
    until_calls(sandbox, 4)
    # When a one-time code to a German number comes (it waits for that rate, read from OVH)
    result = producer.wait(producer.send("+4915112345670", "Code 4711", priority="high", no_stop_clause=True), 60)
    calls_made = len(sandbox.control.calls())
    # Then the rate was read, and the code sent, while the campaign still had calls to make
    assert result.status == "sent"
    assert calls_made <= 1 + len(campaign) - 10, "the code waited for the campaign to be over"
    assert {producer.wait(r, timeout=60).status for r in campaign} == {"sent"}
