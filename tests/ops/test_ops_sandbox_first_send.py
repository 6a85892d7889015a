"""A newcomer's first send: run ``sms-worker sandbox``, export what it prints, run a worker, send."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys


def test_the_sandbox_prints_everything_a_first_send_needs(redis_url, redis_client) -> None:
    # Given the sandbox started as the README says, and the exports it prints
    cli = [sys.executable, "-m", "worker.cli"]
    sandbox = subprocess.Popen([*cli, "sandbox", "--port", "0"], stdout=subprocess.PIPE, text=True)
    worker = None
    try:
        assert sandbox.stdout is not None
        exports = {}
        for line in sandbox.stdout:
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                exports[name] = value
            if line.startswith("Ctrl-C"):
                break
        # (a clean environment: nothing but what a newcomer has, the exports and their Redis)
        environ = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
        env = {**environ, **exports, "REDIS_URL": redis_url}
        # When a worker runs with them and the newcomer sends and waits
        worker = subprocess.Popen([*cli, "run"], env=env)
        send = [*cli, "send", "--to", "+33612345678", "--message", "Hello", "--wait", "--timeout", "30"]
        done = subprocess.run(send, env=env, capture_output=True, text=True, timeout=60)
        # Then the SMS is sent
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.split("\n", 1)[1])["status"] == "sent"
        assert worker.poll() is None
    finally:
        for process in (worker, sandbox):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
        if sandbox.stdout is not None:
            sandbox.stdout.close()
