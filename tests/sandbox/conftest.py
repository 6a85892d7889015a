"""Fixtures of the sandbox's own tests: a fresh sandbox per test, real HTTP, real python-ovh.

Clients are not closed one by one: stopping a sandbox closes every connection it serves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import ovh
import pytest

from ovh_sandbox import Sandbox
from worker.ovhcloud.client import make_client

#: Short timeouts: every answer of the sandbox is immediate unless a test delays it.
TIMEOUT = (2.0, 5.0)


class FakeClock:
    """A unix clock the test moves by hand (the sandbox's clock seam)."""

    def __init__(self) -> None:
        self.now = time.time()
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Factory of started sandboxes (3 s hold time), stopped after the test."""
    started: list[Sandbox] = []

    def factory(**options: Any) -> Sandbox:
        options.setdefault("hold_s", 3.0)
        sandbox = Sandbox(**options).start()
        started.append(sandbox)
        return sandbox

    yield factory
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sb(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox(seed=0)


@pytest.fixture
def clients() -> Callable[..., ovh.Client]:
    """Factory of python-ovh clients for a sandbox: its credentials unless overridden."""

    def factory(sandbox: Sandbox, timeout: Any = TIMEOUT, **credentials: Any) -> ovh.Client:
        return make_client(sandbox.base_url, timeout=timeout, **{**sandbox.credentials, **credentials})

    return factory


@pytest.fixture
def client(sb: Sandbox, clients: Callable[..., ovh.Client]) -> ovh.Client:
    return clients(sb)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def send() -> Callable[..., Any]:
    """POST /sms/{service}/jobs, from the enabled sender SANDBOX and non-commercial unless told."""

    def post(client: ovh.Client, service: str, receivers: list[str], message: str = "Hello", **options: Any) -> Any:
        options.setdefault("sender", "SANDBOX")
        options.setdefault("noStopClause", True)
        return client.post(f"/sms/{service}/jobs", message=message, receivers=receivers, **options)

    return post


class Documents:
    """A plain HTTP server on 127.0.0.1 serving texts the test puts at paths (``url(path)``);
    any other path is 404. Stands for the worker's inbound service in the sandbox's own tests."""

    def __init__(self) -> None:
        import http.server

        texts: dict[str, bytes] = {}
        self.texts = texts
        self.fetched: list[str] = []
        fetched = self.fetched

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                fetched.append(self.path)
                body = texts.get(self.path)
                self.send_response(404 if body is None else 200)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def put(self, path: str, text: str) -> str:
        self.texts[path] = text.encode()
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def documents() -> Iterator[Documents]:
    served = Documents()
    yield served
    served.close()
