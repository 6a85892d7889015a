"""``sms-worker send`` as a developer would use it, against a running worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_send_and_wait_prints_the_result(make_app, redis_url, sandbox) -> None:
    make_app()
    env = {**os.environ, "REDIS_URL": redis_url}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "send",
            "--to",
            "+33612345678",
            "--message",
            "Hello from the CLI",
            "--priority",
            "high",
            "--wait",
            "--timeout",
            "30",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    request_id, rest = done.stdout.split("\n", 1)
    result = json.loads(rest)
    assert (result["request_id"], result["status"]) == (request_id, "sent")
    assert [s["message"] for s in sandbox.control.sent()] == ["Hello from the CLI"]


def test_send_refuses_bad_input_before_queueing(redis_url, redis_client) -> None:
    env = {**os.environ, "REDIS_URL": redis_url}
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "send", "--to", "+33612345678", "--message", ""],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "message" in done.stderr
    assert redis_client.dbsize() == 0
