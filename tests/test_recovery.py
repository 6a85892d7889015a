"""A worker that stops in the middle of a dispatch loses nothing and sends nothing twice.

The stopped worker is played by claiming a batch by hand (as its dispatcher would) and never
finishing it; a live dispatcher's recovery sweep then finds the attempt.
"""

from __future__ import annotations

import uuid

import pytest

from contracts import SendResult, SmsProducer
from contracts.models import CreditUsage, SendRequest
from tests.helpers import read_events
from worker.app import App, build_app
from worker.pipeline.buffers import Claim
from worker.settings import Settings


@pytest.fixture
def idle_app(redis_client, redis_url, sandbox):
    """Accept stage and dispatchers built but not running: the test drives them by hand."""
    settings = Settings(
        redis_url=redis_url,
        ovh_endpoint=sandbox.base_url,
        service_name=sandbox.service_name,
        sender="SANDBOX",
        rate_limit=100.0,
        rate_limit_burst=10,
    )
    return build_app(settings, ovh_credentials=sandbox.credentials)


def stage_and_claim(app: App, receivers: list[str]) -> tuple[list[str], Claim]:
    requests = [SendRequest(message="Your code is 1234", receivers=[r], priority="high") for r in receivers]
    assert app.accept([r.model_dump(mode="json") for r in requests], lane="high") == ["staged"] * len(requests)
    claim = app.buffer.claim([("high", 0)], uuid.uuid4().hex, "a-worker-that-will-stop")
    assert isinstance(claim, Claim)
    return [r.request_id for r in requests], claim


def test_a_batch_claimed_but_never_called_is_staged_again_and_sent_once(idle_app, redis_client, sandbox) -> None:
    # Given a worker that claimed a batch and stopped before calling OVH
    request_ids, _claim = stage_and_claim(idle_app, ["+33612345678", "+33612345679"])
    # When another worker's recovery sweep runs, then its dispatcher
    live = idle_app.dispatchers[1]
    live.recover(older_than_ms=0)
    assert live.run_once() is True
    # Then each receiver got exactly one SMS and each request one `sent` result
    assert sorted(s["receiver"] for s in sandbox.control.sent()) == ["+33612345678", "+33612345679"]
    producer = SmsProducer(client=redis_client)
    assert {producer.wait(rid, timeout=5).status for rid in request_ids} == {"sent"}


def test_a_batch_left_in_flight_is_settled_unknown_and_never_resent(idle_app, redis_client, sandbox) -> None:
    # Given a worker that stopped while its jobs call was in flight
    request_ids, claim = stage_and_claim(idle_app, ["+33612345678"])
    idle_app.buffer.mark_called(claim.call_id)
    # When the recovery sweep runs (twice: a second sweep must change nothing)
    live = idle_app.dispatchers[1]
    live.recover(older_than_ms=0)
    live.recover(older_than_ms=0)
    # Then nothing was sent again, and the request has one `unknown` result and its CreditUsage
    assert sandbox.control.sent() == []
    assert live.run_once() == -1, "nothing is left to dispatch"
    events = read_events(redis_client)
    [result] = [e for e in events if isinstance(e, SendResult)]
    assert (result.request_id, result.status) == (request_ids[0], "unknown")
    assert result.error is not None and result.error.code == "outcome_unknown"
    [usage] = [e for e in events if isinstance(e, CreditUsage)]
    assert usage.call_id == claim.call_id
    assert usage.credits_used == 0 and usage.credits_refunded == 0
    assert usage.credits_unconfirmed == usage.credits_reserved > 0
