"""SmsProducer writes messages a real dramatiq worker consumes, on the right lane."""

from __future__ import annotations

import threading

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from pydantic import ValidationError

from contracts import NotReplicated, SmsProducer
from contracts.models import SendRequest
from contracts.wire import accept_actor_name, group_key, lane_queue


def consume(client: redis.Redis, lane: str, expected: int, messages: list | None = None) -> list[dict]:
    """Run a real dramatiq worker on ``lane``'s queue until ``expected`` requests arrived.

    A message carries one request (a JSON object) or a pack of them (an array); ``messages``,
    when given, collects the raw message arguments.
    """
    broker = RedisBroker(client=client)
    received: list[dict] = []
    done = threading.Event()

    def record(payload: dict | list) -> None:
        if messages is not None:
            messages.append(payload)
        received.extend(payload if isinstance(payload, list) else [payload])
        if len(received) >= expected:
            done.set()

    dramatiq.actor(record, broker=broker, actor_name=accept_actor_name(lane), queue_name=lane_queue(lane))
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        assert done.wait(10), f"only {len(received)} of {expected} messages consumed"
    finally:
        worker.stop()
    return received


def test_a_request_reaches_a_dramatiq_actor_intact(redis_client: redis.Redis) -> None:
    producer = SmsProducer(client=redis_client)
    request_id = producer.send("+33612345678", "Your code is 1234", priority="high", metadata={"k": [1, 2]})
    [payload] = consume(redis_client, "high", 1)
    request = SendRequest.model_validate(payload)
    assert request.request_id == request_id
    assert request.receivers == ["+33612345678"]
    assert request.metadata == {"k": [1, 2]}


def test_large_receiver_lists_are_split_in_order(redis_client: redis.Redis) -> None:
    producer = SmsProducer(client=redis_client, max_receivers_per_request=400)
    receivers = [f"+336{n:08d}" for n in range(1000)]
    request_id = producer.send(receivers, "Sale starts now", request_id="campaign-1", priority="low")
    messages: list = []
    payloads = consume(redis_client, "low", 3, messages)
    assert len(messages) == 1, "the three parts (1,000 receivers in all) fit one pack"
    assert sorted(p["request_id"] for p in payloads) == ["campaign-1#1", "campaign-1#2", "campaign-1#3"]
    assert [len(p["receivers"]) for p in sorted(payloads, key=lambda p: p["request_id"])] == [400, 400, 200]
    assert sorted(r for p in payloads for r in p["receivers"]) == sorted(receivers)
    assert request_id == "campaign-1"


def test_a_bad_request_raises_before_anything_is_queued(redis_client: redis.Redis) -> None:
    producer = SmsProducer(client=redis_client)
    with pytest.raises(ValidationError, match="priority"):
        producer.send("+33612345678", "hi", priority="urgent")
    assert redis_client.dbsize() == 0


def test_publish_packs_requests_by_lane_within_bounds(redis_client: redis.Redis) -> None:
    from contracts.producer import PACK_MAX_REQUESTS

    producer = SmsProducer(client=redis_client)
    requests = [SendRequest(message="hi", receivers=[f"+336{n:08d}"], priority="low") for n in range(250)]
    requests.insert(120, SendRequest(message="code", receivers=["+33612345678"], priority="high"))
    ids = producer.publish(requests)
    assert ids == [r.request_id for r in requests]
    low_messages: list = []
    low = consume(redis_client, "low", 250, low_messages)
    assert [p["request_id"] for p in low] == [r.request_id for r in requests if r.lane == "low"]
    assert all(len(m) <= PACK_MAX_REQUESTS for m in low_messages)
    # the high request interrupts the low run: 120 before it (100 + 20), 130 after (100 + 30)
    assert [len(m) for m in low_messages] == [100, 20, 100, 30]
    assert [p["request_id"] for p in consume(redis_client, "high", 1)] == [requests[120].request_id]


def test_a_campaign_is_streamed_from_an_iterator(redis_client: redis.Redis) -> None:
    # Given receivers that come from a generator (a file, a database cursor)
    produced = 0

    def numbers():
        nonlocal produced
        for n in range(25_000):
            produced += 1
            yield f"+336{n:08d}"

    producer = SmsProducer(client=redis_client, max_receivers_per_request=100)
    seen_at_first_publish: list[int] = []
    publish = producer.publish

    def spy(requests):
        seen_at_first_publish.append(produced)
        return publish(requests)

    producer.publish = spy  # type: ignore[method-assign]
    request_id = producer.send(numbers(), "Sale", request_id="stream-1", priority="veryLow")
    # Then it is queued as it is read, a bounded number of receivers ahead
    from contracts.producer import STREAM_PUBLISH_REQUESTS

    assert seen_at_first_publish[0] <= STREAM_PUBLISH_REQUESTS * 100 + 100
    assert len(seen_at_first_publish) == 3
    assert int(redis_client.get(group_key("stream-1"))) == 250
    payloads = consume(redis_client, "veryLow", 250)
    assert [p["request_id"] for p in payloads] == [f"{request_id}#{n}" for n in range(1, 251)]
    assert sum(len(p["receivers"]) for p in payloads) == 25_000


def test_wait_replicas_says_when_no_replica_holds_the_requests_and_sending_again_is_safe(
    make_app, redis_url, sandbox
) -> None:
    # Given a worker, and a producer that wants each publish held by one replica (this Redis has none)
    make_app()
    producer = SmsProducer(redis_url, wait_replicas=1, wait_timeout_ms=50)
    # When a send is not confirmed, and is sent again under the same id
    for _ in range(2):
        with pytest.raises(NotReplicated, match="0 of 1 replica"):
            producer.send("+33612345678", "Hello", request_id="replicated-1")
    # Then the request was queued all the same, and sent once
    assert producer.wait("replicated-1", timeout=30).status == "sent"
    assert len(sandbox.control.sent()) == 1
    producer.close()
