"""Fixtures of the inbound tests: ``sms-worker inbound`` as a real process, called over loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import _die_with_parent
from tests.waiting import wait_until

#: The token the tests' services are started with.
TOKEN = "test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class InboundProcess:
    process: subprocess.Popen[bytes]
    base: str  # http://127.0.0.1:<port>

    def url(self, kind: str, token: str = TOKEN) -> str:
        return f"{self.base}/ovh/{token}/{kind}"

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``/metrics``: ``(name, sorted labels) -> value``."""
        text = requests.get(self.base + "/metrics", timeout=5).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def counter(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def output(self) -> str:
        """What the process wrote (stdout and stderr), once it has stopped."""
        out, _ = self.process.communicate(timeout=30)
        return out.decode(errors="replace")


@pytest.fixture
def sandbox() -> Iterator[Any]:
    """The suite's sandbox, with receipts final within half a second; SMS fail only when told."""
    from ovh_sandbox import Sandbox

    with Sandbox(port=0, seed=1, delivery_delay_s=(0.05, 0.4), failure_rate=0.0) as sb:
        yield sb


@pytest.fixture
def inbound_env(redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "SMS_WORKER_INBOUND_TOKEN": TOKEN,
        "SMS_WORKER_SERVICE_NAME": "sms-sandbox-1",
        "SMS_WORKER_INBOUND_ORPHAN_GRACE_S": "1",
    }


@pytest.fixture
def start_inbound(inbound_env: dict[str, str]) -> Iterator[Callable[..., InboundProcess]]:
    """Factory: start ``sms-worker inbound`` (extra environment as keywords), wait until it is
    ready (``ready=False``: until it answers at all); each is stopped with SIGTERM after the test."""
    started: list[InboundProcess] = []

    def start(ready: bool = True, **env: str) -> InboundProcess:
        port = free_port()
        environ = {**inbound_env, "SMS_WORKER_INBOUND_PORT": str(port), **env}
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "inbound"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        handle = InboundProcess(process, f"http://127.0.0.1:{port}")
        started.append(handle)

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"sms-worker inbound exited: {handle.output()}")
            try:
                return requests.get(handle.base + ("/readyz" if ready else "/healthz"), timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(answers, what="sms-worker inbound to get ready")
        return handle

    yield start
    for handle in started:
        if handle.process.poll() is None:
            handle.process.send_signal(signal.SIGTERM)
        try:
            handle.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            handle.process.kill()
            handle.process.communicate()


def callbacks_setup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``sms-worker callbacks setup ARGS`` as a user runs it, in ``env``."""
    command = [sys.executable, "-m", "worker.cli", "callbacks", "setup", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def track(
    client: Any, ovh_id: int, receiver: str, *, request_id: str = "req-1", reply_to: str = "results", **more: Any
) -> None:
    """Record an SMS as the settle step does (``keys.sms``), without sending it."""
    from worker.store import keys

    fields = {"request_id": request_id, "receiver": receiver, "reply_to": reply_to, "service": "sms-sandbox-1"}
    fields.update({"sent_at": repr(time.time()), "call_id": "test-call", **more})
    client.hset(keys.sms(ovh_id), mapping=fields)
    client.expire(keys.sms(ovh_id), 3600)
