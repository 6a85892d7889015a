"""SIGTERM drains a worker: it stops claiming, finishes and settles the call in flight, hands back
what it had not called, and exits 0 within its drain time; a second signal exits at once."""

from __future__ import annotations

import signal

from contracts import SmsProducer
from tests.test_attempts import LEASE
from tests.waiting import wait_until
from worker.store import keys


def test_sigterm_finishes_the_call_in_flight_and_exits_zero(worker_processes, redis_client, sandbox) -> None:
    # Given OVH taking 3 s per call, and a worker in the middle of one
    sandbox.control.set_faults(latency_ms=3000)
    [worker] = worker_processes(1, SMS_WORKER_DRAIN_S="20")
    producer = SmsProducer(client=redis_client)
    request_id = producer.send("+33612345678", "Your code is 1234", priority="high", no_stop_clause=True)
    wait_until(lambda: sandbox.control.calls(), what="the call to start")
    # When it is asked to stop
    worker.send_signal(signal.SIGTERM)
    # Then it exits 0 within its drain time, with the call settled: one SMS, one result
    assert worker.wait(25) == 0
    assert producer.result(request_id) is not None and producer.result(request_id).status == "sent"  # type: ignore[union-attr]
    assert len(sandbox.control.sent()) == 1


def test_what_a_stopping_worker_had_not_called_is_sent_by_another(worker_processes, redis_client, sandbox) -> None:
    # Given one call slot every 10 s (the worker's start-up lookups take the first ones), a first
    # code sent, and a second one waiting for its slot
    [worker] = worker_processes(
        1, SMS_WORKER_RATE_LIMIT="0.1", SMS_WORKER_RATE_LIMIT_BURST="1", SMS_WORKER_DRAIN_S="20", **LEASE
    )
    producer = SmsProducer(client=redis_client)
    first = producer.send("+33612345678", "Code 1", priority="high", no_stop_clause=True)
    assert producer.wait(first, timeout=60).status == "sent"
    second = producer.send("+33612345679", "Code 2", priority="high", no_stop_clause=True)

    def waiting_for_a_slot() -> int:
        return sum(redis_client.zcard(key) for key in redis_client.keys(keys.rate_waiters("*", "high")))

    wait_until(waiting_for_a_slot, what="a dispatcher to wait for the second code's slot")
    # When the worker is stopped while it waits for the slot
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(25) == 0
    assert producer.result(second) is None and len(sandbox.control.sent()) == 1
    # Then another worker sends what it had not called, once
    worker_processes(1, SMS_WORKER_RATE_LIMIT="0.1", SMS_WORKER_RATE_LIMIT_BURST="1", **LEASE)
    assert producer.wait(second, timeout=30).status == "sent"
    assert sorted(s["receiver"] for s in sandbox.control.sent()) == ["+33612345678", "+33612345679"]


def test_a_second_signal_exits_at_once_and_the_lease_hands_the_call_over(
    worker_processes, redis_client, sandbox
) -> None:
    # Given a worker whose call OVH carries out and then holds
    sandbox.control.set_faults(hold_s=60)
    sandbox.control.add_fault("timeout_after_accept", next=1)
    [worker] = worker_processes(1, SMS_WORKER_OVH_READ_TIMEOUT_S="60", SMS_WORKER_DRAIN_S="60", **LEASE)
    producer = SmsProducer(client=redis_client)
    request_id = producer.send("+33612345678", "Your code is 1234", priority="high", no_stop_clause=True)
    wait_until(lambda: sandbox.control.sent(), what="the call to reach OVH")
    # When it gets SIGTERM, then SIGTERM again
    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: b"stopping: draining" in worker.log_path.read_bytes(), what="the worker to start draining")
    worker.send_signal(signal.SIGTERM)
    # Then it leaves at once (long before its 60 s drain time)
    assert worker.wait(10) == 128 + signal.SIGTERM
    # and once its lease expires, another worker finds the call at OVH: sent, once
    worker_processes(1, **LEASE)
    result = producer.wait(request_id, timeout=30)
    assert result.status == "sent" and len(sandbox.control.sent()) == 1
