"""Reading what the worker published, as a consuming service would see it."""

from __future__ import annotations

import json
from typing import Any

import redis

from contracts import parse_event
from contracts.results import Event
from contracts.wire import DEFAULT_RESULTS_QUEUE, DRAMATIQ_NAMESPACE


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
