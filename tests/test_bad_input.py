"""Bad input never crashes the worker, is never retried forever, and loses nothing.

A request whose id can be read gets one ``rejected`` result naming the field and reason; a
message whose payload cannot be read at all lands in the dead-letter queue.
"""

from __future__ import annotations

import uuid

import pytest

from contracts import SendResult, SmsProducer
from contracts.wire import lane_queue, messages_key
from tests.helpers import dead_letters, enqueue_raw, read_events
from tests.waiting import wait_until


def wait_result(client, request_id: str) -> SendResult:
    return SmsProducer(client=client).wait(request_id, timeout=20)


@pytest.mark.parametrize(
    ("payload", "field", "code", "words"),
    [
        ({"receivers": ["+33612345678"], "message": 42}, "message", "invalid_request", "valid string"),
        ({"receivers": ["+33612345678"], "message": "hi", "urgent": True}, "urgent", "invalid_request", "Extra"),
        ({"receivers": ["+33612345678"], "message": ""}, "message", "invalid_request", "at least 1 character"),
        ({"receivers": ["+33612345678"], "message": "€" * 460}, "message", "message_too_long", "at most 6 parts"),
        ({"receivers": ["+33612345678"], "message": "x" * 1000}, "message", "invalid_request", "at most 918"),
        (
            {"receivers": [f"+336{n:08d}" for n in range(1001)], "message": "hi"},
            "receivers",
            "invalid_request",
            "at most 1000",
        ),
        ({"receivers": ["12", "abc"], "message": "hi"}, "receivers", "no_valid_receivers", "none is a valid"),
        ({"receivers": ["+33612345678"], "message": "hi", "priority": "urgent"}, "priority", "invalid_request", "high"),
    ],
)
def test_a_bad_request_gets_one_rejected_result(make_app, redis_client, sandbox, payload, field, code, words) -> None:
    make_app()
    request_id = f"bad-{uuid.uuid4().hex[:8]}"
    enqueue_raw(redis_client, "high", {"request_id": request_id, **payload})
    result = wait_result(redis_client, request_id)
    assert result.status == "rejected"
    assert result.error is not None
    assert (result.error.field, result.error.code) == (field, code)
    assert words in result.error.message
    assert sandbox.control.counters()["jobs_calls"] == 0
    assert [e.request_id for e in read_events(redis_client)] == [request_id]


def test_invalid_numbers_are_set_aside_and_the_rest_sent(make_app, redis_client, sandbox) -> None:
    make_app()
    producer = SmsProducer(client=redis_client)
    request_id = producer.send(["+33612345678", "12", "0612345679"], "Hello", priority="high")
    result = producer.wait(request_id, timeout=20)
    assert result.status == "sent"
    outcomes = {o.receiver: (o.status, o.reason) for o in result.receivers}
    assert outcomes["+33612345678"][0] == "sent"
    assert outcomes["+33612345679"][0] == "sent"  # national form, read in the default region (FR)
    assert outcomes["12"][0] == "invalid" and outcomes["12"][1]
    assert sorted(s["receiver"] for s in sandbox.control.sent()) == ["+33612345678", "+33612345679"]


@pytest.mark.parametrize("payload", ["{not json", ["a", "list"], {"message": "no id", "receivers": ["+33612345678"]}])
def test_an_unreadable_message_is_dead_lettered(make_app, redis_client, sandbox, payload, caplog) -> None:
    make_app()
    enqueue_raw(redis_client, "medium", payload)
    [dead] = wait_until(lambda: dead_letters(redis_client, "sms.medium"), timeout=10, what="the dead letter")
    assert dead["args"] == [payload]
    assert "dead-lettering" in caplog.text
    assert read_events(redis_client) == []
    # the worker is still alive: a good request still goes through
    producer = SmsProducer(client=redis_client)
    assert producer.wait(producer.send("+33612345678", "still here", priority="high"), timeout=20).status == "sent"


def test_a_redelivered_bad_request_gets_no_second_result(make_app, redis_client, sandbox) -> None:
    make_app()
    bad = {"request_id": "bad-twice", "receivers": ["+33612345678"], "message": ""}
    enqueue_raw(redis_client, "high", bad)
    enqueue_raw(redis_client, "high", bad)
    assert wait_result(redis_client, "bad-twice").status == "rejected"
    # (both copies taken and acked: the second one was read too, and published nothing)
    wait_until(lambda: redis_client.hlen(messages_key(lane_queue("high"))) == 0, timeout=5, what="the lane to drain")
    assert [e.request_id for e in read_events(redis_client)] == ["bad-twice"]


def test_an_unreadable_request_in_a_pack_is_dead_lettered_alone(make_app, redis_client, sandbox) -> None:
    # Given a pack (one queue message, as SmsProducer.publish writes) with one unreadable request
    make_app()
    good = {"request_id": "pack-good", "receivers": ["+33612345678"], "message": "hi", "priority": "high"}
    enqueue_raw(redis_client, "high", [good, {"message": "no id"}])
    # Then the good one is sent and answered, and only the bad one is in the dead-letter queue
    assert wait_result(redis_client, "pack-good").status == "sent"
    [dead] = wait_until(lambda: dead_letters(redis_client, "sms.high"), timeout=10, what="the dead letter")
    assert dead["args"] == [{"message": "no id"}]
