"""Reading what the worker published, as a consuming service would see it."""

from __future__ import annotations

import json
from typing import Any

import redis

from contracts import parse_event
from contracts.results import Event
from contracts.wire import (
    DEFAULT_RESULTS_QUEUE,
    dead_letter_messages_key,
    enqueue,
    messages_key,
    queue_key,
    request_message,
)


def read_queue(client: redis.Redis, queue: str = DEFAULT_RESULTS_QUEUE) -> list[dict[str, Any]]:
    """Every dramatiq message waiting on ``queue``, decoded, in order (reads, does not consume)."""
    ids = client.lrange(queue_key(queue), 0, -1)
    bodies = client.hmget(messages_key(queue), ids) if ids else []
    return [json.loads(body) for body in bodies]


def read_events(client: redis.Redis, queue: str = DEFAULT_RESULTS_QUEUE) -> list[Event]:
    """The result events on ``queue``, validated against the contract models."""
    return [parse_event(message["args"][0]) for message in read_queue(client, queue)]


def dead_letters(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """Messages dramatiq moved to ``queue``'s dead-letter queue."""
    bodies = client.hvals(dead_letter_messages_key(queue))
    return [json.loads(body) for body in bodies]


def enqueue_raw(client: redis.Redis, lane: str, payload: Any) -> None:
    """Publish a message the way a careless producer would: any payload, no validation."""
    enqueue(client, request_message(lane, payload))


def redis_ms(client: redis.Redis) -> int:
    """The Redis server's clock (ms): the one attempts and leases are timed with."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000
