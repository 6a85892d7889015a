"""Every step of an attempt survives a lost reply (issue 16, item 1).

The worker's Redis client here loses the reply of one chosen script run: Redis carried the step
out, the worker never heard back. redis-py then sends the step again on a new connection (its
default retry), as it does after a stall or a dropped connection in production. Each step
carries a token chosen before it is sent (the call id, the try number), so the step sent again
answers "already applied by you" and the worker goes on; a step whose reply never came at all
is found by the sweep once the attempt made no progress past its call's deadline.
"""

from __future__ import annotations

import uuid

from contracts import SmsProducer
from contracts.models import SendRequest
from tests.lossy import LostReplies, lossy_client
from tests.waiting import wait_until
from worker.attempts import steps
from worker.attempts.lease import Lease
from worker.batching.buffers import Due
from worker.store import keys


def sent_receivers(sandbox) -> list[str]:
    return [sms["receiver"] for sms in sandbox.control.sent()]


def test_a_claim_whose_reply_was_lost_is_resumed(make_app, redis_url, redis_client, sandbox) -> None:
    # Given a worker whose first claim runs on Redis but whose reply is lost
    lost = LostReplies()
    lost.lose(steps.Claim)
    make_app(client=lossy_client(redis_url, lost))
    producer = SmsProducer(client=redis_client)
    # When a code is sent
    request_id = producer.send("+33612345678", "Your code is 1234", priority="high", no_stop_clause=True)
    # Then the claim sent again finds its own attempt and the call goes on: sent once, while the
    # worker lives (before, the attempt sat "calling" under a live lease: no result, ever)
    result = producer.wait(request_id, timeout=20)
    assert lost.lost == ["claim"]
    assert result.status == "sent"
    assert sent_receivers(sandbox) == ["+33612345678"]


def test_a_lost_reply_to_marking_a_try_not_sent_does_not_fence_out_its_owner(
    make_app, redis_url, redis_client, sandbox
) -> None:
    # Given OVH answers the first try 503, and the reply of the step that records "surely not
    # sent" (calling -> claimed) is lost
    lost = LostReplies()
    lost.lose(steps.Transition)  # the first transition of the call is that one
    sandbox.control.add_fault("503", next=1, retry_after=0)
    app = make_app(client=lossy_client(redis_url, lost))
    producer = SmsProducer(client=redis_client)
    request_id = producer.send("+33612345678", "Your code is 1234", priority="high", no_stop_clause=True)
    # Then the step sent again says it was applied by this owner, the call is retried and sent
    # (before, the owner read its own step as "fenced out" and abandoned the attempt)
    result = producer.wait(request_id, timeout=20)
    assert lost.lost == ["attempt"]
    assert result.status == "sent"
    assert [c["status"] for c in sandbox.control.calls()] == [503, 200]
    assert sent_receivers(sandbox) == ["+33612345678"]
    assert app.attempts.ambiguous_count() == 0


def test_a_lost_reply_to_settling_publishes_one_result(make_app, redis_url, redis_client, sandbox) -> None:
    # Given the reply of the step that settles the call is lost
    lost = LostReplies()
    lost.lose(steps.Settle)
    make_app(client=lossy_client(redis_url, lost))
    producer = SmsProducer(client=redis_client)
    request_id = producer.send("+33612345678", "Your code is 1234", priority="high", no_stop_clause=True)
    # Then the settle sent again says it was applied: one result, one SMS, nothing reserved left
    result = producer.wait(request_id, timeout=20)
    wait_until(lambda: lost.lost == ["settle"], what="the settle's reply lost")  # read after the result is out
    assert result.status == "sent"
    assert sent_receivers(sandbox) == ["+33612345678"]
    assert not redis_client.exists(keys.request(request_id))


def test_an_attempt_of_a_live_owner_that_makes_no_progress_is_swept(make_app, redis_client, sandbox) -> None:
    # Given a worker that claimed a call and then never went on with it, its lease alive (its
    # thread died, or it lost the claim's reply and never asked again)
    app = make_app(lanes=["low"], lease_s=2.0)  # consumes and dispatches nothing of "high"
    request = SendRequest(message="Hello", receivers=["+33612345678"], priority="high", no_stop_clause=True)
    assert app.accept([request.model_dump(mode="json")], lane="high") == ["staged"]
    found = app.buffers.peek(["high"])
    assert isinstance(found, Due)
    stuck = Lease(redis_client, worker="stuck-worker", lease_s=60)
    assert stuck.refresh()
    owner = stuck.owner()
    assert owner is not None
    claimed = app.attempts.claim(owner, "high", found.batch_key, uuid.uuid4().hex, linger_ms=0, max_receivers=500)
    assert not isinstance(claimed, steps.NothingDue | steps.LeaseLost)
    # When another worker serving that lane runs
    make_app(lanes=["high"], lease_s=2.0)
    # Then it takes the stuck attempt over once no progress was made past the step's deadline
    # (its lease is still alive), and the code is sent once
    result = SmsProducer(client=redis_client).wait(request.request_id, timeout=30)
    assert result.status == "sent"
    assert sent_receivers(sandbox) == ["+33612345678"]
    assert redis_client.exists(keys.lease(owner.token))
