"""SmsProducer writes messages a real dramatiq worker consumes, on the right lane."""

from __future__ import annotations

import threading

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from pydantic import ValidationError

from contracts import SmsProducer
from contracts.models import SendRequest
from contracts.wire import accept_actor_name, lane_queue


def consume(client: redis.Redis, lane: str, expected: int) -> list[dict]:
    """Run a real dramatiq worker on ``lane``'s queue until ``expected`` payloads arrived."""
    broker = RedisBroker(client=client)
    received: list[dict] = []
    done = threading.Event()

    def record(payload: dict) -> None:
        received.append(payload)
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
    payloads = consume(redis_client, "low", 3)
    assert sorted(p["request_id"] for p in payloads) == ["campaign-1/1", "campaign-1/2", "campaign-1/3"]
    assert [len(p["receivers"]) for p in sorted(payloads, key=lambda p: p["request_id"])] == [400, 400, 200]
    assert sorted(r for p in payloads for r in p["receivers"]) == sorted(receivers)
    assert request_id == "campaign-1"


def test_a_bad_request_raises_before_anything_is_queued(redis_client: redis.Redis) -> None:
    producer = SmsProducer(client=redis_client)
    with pytest.raises(ValidationError, match="priority"):
        producer.send("+33612345678", "hi", priority="urgent")
    assert redis_client.dbsize() == 0
