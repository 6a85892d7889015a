"""What each OVH failure does to a request: retried only when it cannot send twice.

Faults are injected by the sandbox; the worker talks to it through the real python-ovh client.
"""

from __future__ import annotations

import socket

import pytest

from contracts import SendResult, SmsProducer
from tests.helpers import read_events


def send_one(redis_client, text: str = "Your code is 1234") -> SendResult:
    producer = SmsProducer(client=redis_client)
    request_id = producer.send("+33612345678", text, priority="high", no_stop_clause=True)
    result = producer.wait(request_id, timeout=30)
    assert [e.request_id for e in read_events(redis_client) if isinstance(e, SendResult)] == [request_id]
    return result


@pytest.mark.parametrize("kind", ["429", "503"])
def test_refusals_that_did_nothing_are_retried(make_app, redis_client, sandbox, kind) -> None:
    make_app()
    sandbox.control.add_fault(kind, next=2, retry_after=0)
    result = send_one(redis_client)
    assert result.status == "sent"
    assert [c["status"] for c in sandbox.control.calls()] == [int(kind), int(kind), 200]
    assert len(sandbox.control.sent()) == 1


def test_retries_are_bounded(make_app, redis_client, sandbox) -> None:
    make_app(retry_attempts=3)
    sandbox.control.add_fault("503", probability=1.0)
    result = send_one(redis_client)
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "ovh_error"
    assert result.error.ovh_class == "APIError"
    assert len(sandbox.control.calls()) == 3
    assert sandbox.control.sent() == []


@pytest.mark.parametrize("kind", ["500", "502", "reset"])
def test_failures_that_may_have_sent_are_reconciled_not_retried_blindly(make_app, redis_client, sandbox, kind) -> None:
    # Given OVH fails the next call in a way that leaves it unknown whether it was carried out
    # (the sandbox did nothing)
    make_app()
    sandbox.control.add_fault(kind, next=1)
    # When a code is sent
    result = send_one(redis_client)
    # Then it was not resent at once: OVH's records were read first, showed nothing after the
    # grace window, and the code was sent again, once
    assert result.status == "sent"
    assert [o.status for o in result.receivers] == ["sent"]
    assert [c["status"] for c in sandbox.control.calls()] == [int(kind) if kind != "reset" else "reset", 200]
    assert len(sandbox.control.sent()) == 1


def test_accepted_then_timed_out_is_found_at_ovh_and_not_sent_twice(make_app, redis_client, sandbox) -> None:
    # Given OVH carries the next call out but its answer never comes
    make_app(ovh_read_timeout_s=1.0)
    sandbox.control.set_faults(hold_s=5)
    sandbox.control.add_fault("timeout_after_accept", next=1)
    # When a code is sent
    result = send_one(redis_client)
    # Then the receiver got exactly one SMS, and reconciliation found it: sent, with OVH's id and credits
    [sms] = sandbox.control.sent()
    assert sms["receiver"] == "+33612345678"
    assert result.status == "sent"
    assert [(o.status, o.ovh_id) for o in result.receivers] == [("sent", sms["id"])]
    assert result.credits == sms["credits"]
    assert len(sandbox.control.calls()) == 1


def test_ovh_refusal_gives_a_failed_result_with_ovh_details(make_app, redis_client, sandbox) -> None:
    # declared at OVH but not validated yet; sender_check off, so that OVH itself refuses the call
    make_app(sender="PENDINGSNDR", sender_check=False)
    result = send_one(redis_client)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.ovh_class == "BadParametersError"
    assert result.error.ovh_query_id
    assert "sender" in result.error.message.lower()
    assert len(sandbox.control.calls()) == 1


def test_ovh_unreachable_is_retried_then_failed(make_app, redis_client, sandbox) -> None:
    # Given rates read earlier (shared in Redis), then OVH out of reach
    make_app().stop()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    make_app(ovh_endpoint=f"http://127.0.0.1:{closed_port}/1.0", retry_attempts=2)
    result = send_one(redis_client)
    assert result.status == "failed"
    assert result.error is not None and "could not connect" in result.error.message
