"""Reading what the worker published, as a consuming service would see it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import dramatiq
import redis

from contracts import parse_event
from contracts.results import Event
from contracts.wire import DEFAULT_RESULTS_QUEUE, DRAMATIQ_NAMESPACE, accept_actor_name, lane_queue

T = TypeVar("T")


def read_queue(client: redis.Redis, queue: str = DEFAULT_RESULTS_QUEUE) -> list[dict[str, Any]]:
    """Every dramatiq message waiting on ``queue``, decoded, in order (reads, does not consume)."""
    ids = client.lrange(f"{DRAMATIQ_NAMESPACE}:{queue}", 0, -1)
    bodies = client.hmget(f"{DRAMATIQ_NAMESPACE}:{queue}.msgs", ids) if ids else []
    return [json.loads(body) for body in bodies]


def read_events(client: redis.Redis, queue: str = DEFAULT_RESULTS_QUEUE) -> list[Event]:
    """The result events on ``queue``, validated against the contract models."""
    return [parse_event(message["args"][0]) for message in read_queue(client, queue)]


def dead_letters(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """Messages dramatiq moved to ``queue``'s dead-letter queue."""
    bodies = client.hvals(f"{DRAMATIQ_NAMESPACE}:{queue}.XQ.msgs")
    return [json.loads(body) for body in bodies]


def enqueue_raw(client: redis.Redis, lane: str, payload: Any) -> None:
    """Publish a message the way a careless producer would: any payload, no validation."""
    message_id = str(uuid.uuid4())
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=lane_queue(lane),
        actor_name=accept_actor_name(lane),
        args=(payload,),
        kwargs={},
        options={"redis_message_id": message_id},
    )
    client.hset(f"{DRAMATIQ_NAMESPACE}:{lane_queue(lane)}.msgs", message_id, message.encode())
    client.rpush(f"{DRAMATIQ_NAMESPACE}:{lane_queue(lane)}", message_id)


def wait_until(
    predicate: Callable[[], T], timeout_s: float = 30.0, what: str = "condition", every_s: float = 0.05
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        time.sleep(every_s)


def redis_ms(client: redis.Redis) -> int:
    """The Redis server's clock (ms): the one attempts and leases are timed with."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000
