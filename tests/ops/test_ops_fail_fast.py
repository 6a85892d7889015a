"""Every command answers a user mistake or an outage with one line and a non-zero exit.

``sms-worker run`` checks Redis, the OVH credentials and the default sender before it starts,
and exits 2 rather than looping on errors.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "worker.cli", *args]
    return subprocess.run(command, env=env or dict(os.environ), capture_output=True, text=True, timeout=60)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (no traceback, nothing else)."""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("sms-worker: "), done.stderr
    return done.stderr.strip()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"OVH_APPLICATION_KEY": "not-the-key"}, ["OVH refused the credentials", "Invalid application key"]),
        ({"OVH_CONSUMER_KEY": "not-the-key"}, ["OVH refused the credentials", "credential does not exist"]),
        ({"SMS_WORKER_SENDER": "PENDINGSNDR"}, ["sender 'PENDINGSNDR'", "not enabled", "waitingValidation"]),
        ({"SMS_WORKER_SENDER": "NOBODY"}, ["sender 'NOBODY'", "does not exist"]),
        ({"SMS_WORKER_SERVICE_NAME": "sms-nobody-1"}, ["SMS account 'sms-nobody-1'", "not found"]),
        ({"REDIS_URL": "redis://127.0.0.1:{closed}/0"}, ["Redis does not answer", "Connection refused"]),
        ({"REDIS_URL": "http://redis:6379"}, ["REDIS_URL is malformed"]),
        ({"REDIS_URL": "redis://:s3cret@redis:port/0"}, ["REDIS_URL is malformed"]),
        ({"OVH_ENDPOINT": "http://127.0.0.1:{closed}/1.0"}, ["OVH API at", "does not answer"]),
        ({"SMS_WORKER_LANES": "urgent"}, ["SMS_WORKER_LANES", "lanes must be"]),
        ({"SMS_WORKER_METRICS_PORT": "{taken}"}, ["cannot serve metrics", "SMS_WORKER_METRICS_PORT"]),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else None,
)
def test_run_refuses_to_start_with_one_line(sandbox_env, change, words) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = {"closed": closed_port(), "taken": taken.getsockname()[1]}
        env = {**sandbox_env, "SMS_WORKER_SENDER": "SANDBOX", "SMS_WORKER_METRICS_HOST": "127.0.0.1"}
        env.update({name: value.format(**ports) for name, value in change.items()})
        done = cli("run", env=env)
    assert done.returncode == 2, done.stderr
    line = one_line(done)
    for word in words:
        assert word in line
    assert "s3cret" not in line


def test_version() -> None:
    done = cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("sms-worker ") and done.stdout.strip()[-1].isdigit()


@pytest.mark.parametrize("command", [["quotas"], ["send", "--to", "+33612345678", "--message", "Hello"]])
def test_commands_answer_a_redis_outage_with_one_line(command) -> None:
    done = cli(*command, env={**os.environ, "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"})
    assert done.returncode == 1
    assert one_line(done).startswith("sms-worker: Redis does not answer")


def test_quotas_sync_answers_an_unreachable_ovh_with_one_line(sandbox_env) -> None:
    env = {**sandbox_env, "OVH_ENDPOINT": f"http://127.0.0.1:{closed_port()}/1.0"}
    done = cli("quotas", "sync", env=env)
    assert done.returncode == 1
    assert one_line(done).startswith("sms-worker: OVH API does not answer")


@pytest.mark.parametrize(
    ("command", "change", "expected"),
    [
        (["run"], {"OVH_ENDPOINT": "ovh-euu"}, "OVH_ENDPOINT 'ovh-euu' is not an OVH endpoint (did you mean ovh-eu?)"),
        (["users", "list"], {"OVH_ENDPOINT": "ovh-euu"}, "OVH_ENDPOINT 'ovh-euu' is not an OVH endpoint"),
        (["run"], {"OVH_CONSUMER_KEY": None}, "OVH_CONSUMER_KEY is not set"),
        (["users", "list"], {"OVH_CONSUMER_KEY": None}, "OVH_CONSUMER_KEY is not set"),
        (["account"], {"OVH_APPLICATION_SECRET": None}, "both application_key and application_secret must be given"),
        (["run"], {"SMS_WORKER_SERVICE_NAME": None}, "SMS_WORKER_SERVICE_NAME is not set"),
        (
            ["callbacks", "setup", "--url", "https://sms.example.com"],
            {"REDIS_URL": None, "SMS_WORKER_INBOUND_TOKEN": "t" * 20},
            "REDIS_URL is not set: sms-worker callbacks setup needs the worker's Redis",
        ),
    ],
    ids=[
        "endpoint typo",
        "endpoint typo (users)",
        "no consumer key",
        "no consumer key (users)",
        "no secret",
        "no service name",
        "callbacks without Redis",
    ],  # fmt: skip
)
def test_a_configuration_mistake_is_named(sandbox_env, command, change, expected) -> None:
    env = {**sandbox_env, "SMS_WORKER_SENDER": "SANDBOX", **{k: v for k, v in change.items() if v is not None}}
    for name in [k for k, v in change.items() if v is None]:
        env.pop(name, None)
    done = cli(*command, env=env)
    assert done.returncode == 2, done.stderr
    line = one_line(done)
    assert expected in line
    assert "'None'" not in line and "%s" not in line
