"""``sms-worker dev``: the whole stack on this machine, in one terminal, until Ctrl-C.

Starts a private Redis, the OVH sandbox, one ``sms-worker run`` and one ``sms-worker inbound``
(each its own process, as in production), points the sandbox's callbacks at the inbound service
(``sms-worker callbacks setup``), then prints what a second terminal exports to use it (the
same variables production reads) and the addresses of the sandbox's control API. The children's
log lines are shown here, prefixed with their name.

Ctrl-C (or SIGTERM) stops everything: the worker and the inbound service get SIGTERM and drain,
then the sandbox and Redis stop; every port is closed and no process is left (the children run
in their own session, so a terminal's Ctrl-C reaches only this process, which stops them in
order; they also get SIGTERM if this process dies).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from devstack.embedded_redis import EmbeddedRedis, die_with_parent, free_port

#: Longest the worker and the inbound service get to answer ``/readyz`` at start (seconds).
START_TIMEOUT_S = 60.0
#: Longest a child gets to drain after SIGTERM before it is killed (seconds): the worker's
#: default drain (SMS_WORKER_DRAIN_S, 20 s) and a margin.
STOP_TIMEOUT_S = 30.0
#: The variable naming the worker's default region (whose credit rate it must know first).
REGION = "SMS_WORKER_DEFAULT_REGION"
#: A number for the example command (the sandbox accepts any valid one).
EXAMPLE_NUMBER = "+33612345678"


class DevError(Exception):
    """The stack could not start; the message says which part and why."""


@dataclass
class Child:
    """A child process whose output lines are echoed to stderr, prefixed with its name."""

    name: str
    process: subprocess.Popen[str]
    _echo: threading.Thread | None = field(default=None, repr=False)

    @classmethod
    def start(cls, name: str, args: list[str], env: dict[str, str]) -> Child:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        child = cls(name, process)
        child._echo = threading.Thread(target=child._copy, args=(process.stdout,), name=f"dev-{name}", daemon=True)
        child._echo.start()
        return child

    def _copy(self, stream: IO[str]) -> None:
        for line in stream:
            print(f"{self.name:<8}| {line}", end="", file=sys.stderr, flush=True)
        stream.close()

    def stop(self) -> None:
        """SIGTERM (the worker drains), then SIGKILL after ``STOP_TIMEOUT_S``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._echo is not None:
            self._echo.join(5.0)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(checks: list[tuple[Child, str, Callable[[], bool]]], stop: threading.Event) -> None:
    """Until every ``(child, what, ready)`` check passes; ``DevError`` when a child exits, time runs
    out or ``stop`` is set (Ctrl-C while starting)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = list(checks)
    while pending:
        if stop.is_set():
            raise DevError("interrupted")
        for check in list(pending):
            child, what, ready = check
            code = child.process.poll()
            if code is not None:
                raise DevError(f"{child.name} stopped at start (exit {code}): see its lines above")
            if ready():
                pending.remove(check)
        if pending and time.monotonic() > deadline:
            raise DevError(f"{pending[0][1]} after {START_TIMEOUT_S:g} s: see the {pending[0][0].name}'s lines above")
        if pending:
            stop.wait(0.2)  # polling processes that are starting: nothing to wait on but their answers


def _priced(redis_url: str, region: str) -> Callable[[], bool]:
    """Whether the worker has read the credit rate of its default region from the sandbox: until
    then it answers a send there ``rate_unknown`` (send again in a few seconds), not what a
    developer trying it should meet first."""
    from contracts.redis_connection import connect
    from worker.accounting.credits import RateTable, RateUnknown

    rates = RateTable(connect(redis_url), ttl_s=float("inf"))

    def check() -> bool:
        try:
            rates.rate(region)
        except RateUnknown:
            return False
        return True

    return check


@contextmanager
def _stopped_on_exit(children: list[Child]) -> Iterator[None]:
    try:
        yield
    finally:
        for child in reversed(children):  # the inbound service first, then the worker
            child.stop()


def _banner(env: dict[str, str], sandbox: Any, inbound_port: int, metrics_port: int) -> str:
    root = sandbox.base_url.removesuffix("/1.0")
    shown = [
        "REDIS_URL",
        "OVH_ENDPOINT",
        "OVH_APPLICATION_KEY",
        "OVH_APPLICATION_SECRET",
        "OVH_CONSUMER_KEY",
        "SMS_WORKER_SERVICE_NAME",
        "SMS_WORKER_SENDER",
        "SMS_WORKER_METRICS_HOST",
        "SMS_WORKER_METRICS_PORT",
    ]
    lines = [
        "",
        "sms-worker dev: Redis, the OVH sandbox, a worker and the inbound service are running.",
        "In another terminal, export these, then use sms-worker as in production:",
        *(f"export {name}={env[name]}" for name in shown),
        f'  sms-worker send --to {EXAMPLE_NUMBER} --message "Hello" --wait',
        "Sandbox control API (what OVH received, faults, delivery receipts):",
        f"  {root}/_sandbox/            every route",
        f"  {root}/_sandbox/sent        SMS accepted",
        f"  {root}/_sandbox/counters    jobs calls, SMS, credits",
        f"  {root}/_sandbox/callbacks   delivery reports and replies sent to the inbound service",
        f"Worker metrics: http://127.0.0.1:{metrics_port}/metrics; inbound service: http://127.0.0.1:{inbound_port}/metrics",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def run_dev(args: argparse.Namespace) -> int:
    """Start the stack, print the banner, wait for Ctrl-C or SIGTERM, stop everything."""
    from ovh_sandbox import Sandbox
    from ovh_sandbox.state import DEFAULT_SENDER

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    children: list[Child] = []
    with ExitStack() as stack:
        try:
            redis_server = stack.enter_context(
                EmbeddedRedis(args.redis_port or None, appendonly=True, own_session=True)
            )
            sandbox = stack.enter_context(Sandbox(port=args.sandbox_port, seed=args.seed))
        except (OSError, RuntimeError) as exc:
            print(f"sms-worker dev: cannot start: {exc}", file=sys.stderr)
            return 1
        inbound_port = args.inbound_port or free_port()
        metrics_port = free_port()
        env = {
            **os.environ,
            "REDIS_URL": redis_server.url,
            "OVH_ENDPOINT": sandbox.base_url,
            "OVH_APPLICATION_KEY": sandbox.credentials["application_key"],
            "OVH_APPLICATION_SECRET": sandbox.credentials["application_secret"],
            "OVH_CONSUMER_KEY": sandbox.credentials["consumer_key"],
            "SMS_WORKER_SERVICE_NAME": sandbox.service_name,
            "SMS_WORKER_SENDER": DEFAULT_SENDER,
            "SMS_WORKER_METRICS_HOST": "127.0.0.1",
            "SMS_WORKER_METRICS_PORT": str(metrics_port),
            "SMS_WORKER_INBOUND_HOST": "127.0.0.1",
            "SMS_WORKER_INBOUND_PORT": str(inbound_port),
            "SMS_WORKER_INBOUND_TOKEN": secrets.token_urlsafe(24),
            "PYTHONUNBUFFERED": "1",
        }
        stack.enter_context(_stopped_on_exit(children))
        try:
            children.append(Child.start("worker", ["run"], env))
            children.append(Child.start("inbound", ["inbound"], env))
            worker, inbound = children
            _wait_ready(
                [
                    (worker, "worker not ready", lambda: _answers(f"http://127.0.0.1:{metrics_port}/readyz")),
                    (inbound, "inbound service not ready", lambda: _answers(f"http://127.0.0.1:{inbound_port}/readyz")),
                    (worker, "no credit rate read", _priced(redis_server.url, os.environ.get(REGION, "FR"))),
                ],
                stop,
            )
            setup = subprocess.run(
                [sys.executable, "-m", "worker.cli", "callbacks", "setup", "--url", f"http://127.0.0.1:{inbound_port}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT_S,
            )
            if setup.returncode != 0:
                raise DevError(f"callbacks setup failed: {setup.stderr.strip()}")
        except (DevError, subprocess.TimeoutExpired) as exc:
            print(f"sms-worker dev: cannot start: {exc}", file=sys.stderr)
            return 1
        print(_banner(env, sandbox, inbound_port, metrics_port), flush=True)
        while not stop.wait(0.5):
            dead = [child for child in children if child.process.poll() is not None]
            if dead:
                print(
                    f"sms-worker dev: {dead[0].name} stopped (exit {dead[0].process.returncode}): stopping everything",
                    file=sys.stderr,
                )
                return 1
        print("sms-worker dev: stopping (the worker drains first)", file=sys.stderr, flush=True)
    print("sms-worker dev: stopped", file=sys.stderr)
    return 0
