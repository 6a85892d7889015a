"""The attempt lifecycle under faults: workers killed and paused, leases lost, fencing.

Worker processes are real ``sms-worker run`` processes with a short lease (2 s), killed with
SIGKILL and paused with SIGSTOP as a node failure, an OOM kill or a VM pause would.
"""

from __future__ import annotations

import signal
import uuid
from typing import Any

import pytest

from contracts import SmsProducer
from contracts.models import SendRequest
from tests.quota_fixtures import create_user, sandbox_spent
from tests.waiting import wait_until
from worker.accounting.quotas import QuotaStore
from worker.app import build_app
from worker.attempts.lease import Lease
from worker.attempts.lifecycle import Attempt, Owner
from worker.attempts.steps import Step
from worker.batching.buffers import Due
from worker.settings import Settings
from worker.store import keys

LEASE = {"SMS_WORKER_LEASE_S": "2", "SMS_WORKER_RECONCILE_GRACE_S": "1"}


def statuses(sandbox: Any) -> list[Any]:
    return [call["status"] for call in sandbox.control.calls()]


def test_a_worker_killed_while_waiting_out_a_503_leaves_a_call_that_never_left(
    worker_processes, redis_client, sandbox
) -> None:
    # Given OVH refuses the next call with 503 and asks to come back in 30 s
    sandbox.control.add_fault("503", next=1, retry_after=30)
    [first] = worker_processes(1, **LEASE)
    producer = SmsProducer(client=redis_client)
    request_id = producer.send("+33612345678", "Your code is 1234", priority="high", no_stop_clause=True)
    wait_until(lambda: statuses(sandbox) == [503], what="the 503")
    # When the worker dies during the backoff, and another one runs
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    [second] = worker_processes(1, **LEASE)
    # Then the call is known never to have left: staged again and sent once, not reconciled
    result = producer.wait(request_id, timeout=60)
    assert result.status == "sent" and result.error is None
    assert statuses(sandbox) == [503, 200]
    assert [s["receiver"] for s in sandbox.control.sent()] == ["+33612345678"]
    log = wait_until(lambda: second.log_path.read_text(), what="the second worker's log")
    assert ": requeued" in log and "reconciled" not in log


def test_a_dead_workers_call_in_flight_is_reconciled_within_a_lease(worker_processes, redis_client, sandbox) -> None:
    # Given OVH carries the next call out and holds its answer
    sandbox.control.set_faults(hold_s=60)
    sandbox.control.add_fault("timeout_after_accept", next=1)
    [first] = worker_processes(1, **LEASE, SMS_WORKER_OVH_READ_TIMEOUT_S="60")
    producer = SmsProducer(client=redis_client)
    request_id = producer.send("+33612345678", "Your code is 1234", priority="high", no_stop_clause=True)
    wait_until(lambda: len(sandbox.control.sent()) == 1, what="the call to reach OVH")
    # When the worker making the call dies before its answer comes, another one running
    worker_processes(1, **LEASE)
    first.send_signal(signal.SIGKILL)
    # Then another worker takes the attempt over once the lease expired, finds the SMS at OVH
    # and settles it: sent, with OVH's id, never sent twice (not 9 minutes later: the wait is
    # bounded by this test's timeout)
    result = producer.wait(request_id, timeout=30)
    [sms] = sandbox.control.sent()
    assert result.status == "sent"
    assert [(o.receiver, o.ovh_id) for o in result.receivers] == [("+33612345678", sms["id"])]
    assert result.credits == sms["credits"]
    assert len(sandbox.control.calls()) == 1


def test_a_paused_worker_sends_nothing_when_it_wakes(worker_processes, redis_client, sandbox) -> None:
    # Given a user with a quota, and OVH that answers the next call 503, retry in 3 s
    create_user(sandbox, "alice")
    quotas = '{"alice": {"quota": 10}}'
    sandbox.control.add_fault("503", next=1, retry_after=3)
    [paused] = worker_processes(1, **LEASE, SMS_WORKER_QUOTAS=quotas)
    producer = SmsProducer(client=redis_client)
    request_id = producer.send("+33612345678", "Your code is 1234", priority="high", user="alice")
    wait_until(lambda: statuses(sandbox) == [503], what="the 503")
    # When that worker is paused past its lease, another takes its attempt over and sends it
    paused.send_signal(signal.SIGSTOP)
    worker_processes(1, **LEASE, SMS_WORKER_QUOTAS=quotas)
    assert producer.wait(request_id, timeout=30).status == "sent"
    # and the paused worker then wakes up, where it was: about to try its call again
    paused.send_signal(signal.SIGCONT)
    # (after its 3 s backoff, it finds the attempt taken over when it marks its retry: no call)
    wait_until(lambda: b"lost its lease" in paused.log_path.read_bytes(), what="the woken worker to see it was fenced")
    # Then the receiver got one SMS, and the user's quota was spent once, never negative
    assert statuses(sandbox) == [503, 200]
    assert [s["receiver"] for s in sandbox.control.sent()] == ["+33612345678"]
    state = QuotaStore(redis_client).get(sandbox.service_name, "alice")
    assert state is not None and (state.reserved, state.spent) == (0, sandbox_spent(sandbox)) == (0, 1)
    assert b"lost its lease" in paused.log_path.read_bytes()


@pytest.fixture
def idle_app(redis_client, redis_url, sandbox):
    """Stages and threads built but not running: the test drives them by hand."""
    settings = Settings(
        redis_url=redis_url,
        ovh_endpoint=sandbox.base_url,
        service_name=sandbox.service_name,
        sender="SANDBOX",
        rate_limit=100.0,
        rate_limit_burst=10,
        lease_s=15,
    )
    app = build_app(settings, ovh_credentials=sandbox.credentials)
    app.refresher.prime(["FR"], None)
    return app


def stage_and_claim(app: Any, owner: Owner, receivers: list[str]) -> tuple[list[str], Attempt]:
    requests = [SendRequest(message="Your code is 1234", receivers=[r], priority="high") for r in receivers]
    assert app.accept([r.model_dump(mode="json") for r in requests], lane="high") == ["staged"] * len(requests)
    found = app.buffers.peek(["high"])
    assert isinstance(found, Due)
    attempt = app.attempts.claim(owner, "high", found.batch_key, uuid.uuid4().hex, linger_ms=0, max_receivers=500)
    assert isinstance(attempt, Attempt)
    return [r.request_id for r in requests], attempt


def test_a_worker_whose_local_lease_ran_out_does_not_call(idle_app, redis_client, sandbox) -> None:
    # Given a worker that claimed a call (the Redis check passed), then was paused: its own
    # clock says its lease is over by the time it would call
    now = [0.0]
    lease = Lease(redis_client, worker="paused-worker", lease_s=15, clock=lambda: now[0])
    assert lease.refresh()
    owner = lease.owner()
    assert owner is not None
    request_ids, attempt = stage_and_claim(idle_app, owner, ["+33612345678"])
    dispatcher = idle_app.dispatchers[0]
    dispatcher.lease = lease
    now[0] += 11.0  # less than the connect timeout (5 s) left
    # When it goes on with the call
    dispatcher.send(attempt, owner)
    # Then nothing reached OVH, and the receiver is back in its buffer for any worker to send
    assert sandbox.control.calls() == []
    assert redis_client.llen(keys.buffer(attempt.batch_key)) == 1
    assert idle_app.attempts.load(attempt.call_id) is None  # released (a tombstone answers a repeat)
    assert redis_client.hget(keys.attempt(attempt.call_id), "state") == b"released"


def test_transitions_are_fenced_by_owner_and_lease(idle_app, redis_client) -> None:
    attempts = idle_app.attempts
    lease = Lease(redis_client, worker="w1", lease_s=15)
    assert lease.refresh()
    owner = lease.owner()
    assert owner is not None
    _, attempt = stage_and_claim(idle_app, owner, ["+33612345678"])
    stranger = Owner("w2", uuid.uuid4().hex)
    # Only the owner may move its attempt; each step is tokened by its try number, so the same
    # step sent again (its reply lost) answers "already", never fences its owner out
    assert attempts.call(stranger, attempt.call_id, 1) is Step.TAKEN
    assert attempts.call(owner, attempt.call_id, 1) is Step.APPLIED
    assert attempts.call(owner, attempt.call_id, 1) is Step.ALREADY
    assert attempts.uncall(stranger, attempt.call_id, 1) is Step.TAKEN
    assert attempts.uncall(owner, attempt.call_id, 1) is Step.APPLIED
    assert attempts.uncall(owner, attempt.call_id, 1) is Step.ALREADY
    assert attempts.call(owner, attempt.call_id, 2) is Step.APPLIED
    # Once its lease is gone, not even the owner may
    redis_client.delete(keys.lease(owner.token))
    assert attempts.uncall(owner, attempt.call_id, 2) is Step.NOLEASE
    assert attempts.ambiguous(owner, attempt.call_id, 2, "late") is Step.NOLEASE
    # but OVH's answer, if it has one, is still recorded for whoever takes it over
    assert attempts.answer(attempt.call_id, {"ids": [1]}) == "calling"
    # and the sweep hands it to the reconcilers (it was calling: it may have left)
    assert attempts.sweep("test") == [(attempt.call_id, "ambiguous")]
    loaded = attempts.load(attempt.call_id)
    assert loaded is not None and loaded.report == {"ids": [1]}
    assert redis_client.zscore(keys.RECONCILE, attempt.call_id) is not None
    assert redis_client.zscore(keys.INFLIGHT, attempt.call_id) is None
