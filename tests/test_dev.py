"""``sms-worker dev``: a local stack in one terminal, used from another, gone after Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ovh_sandbox import SandboxControl
from tests.conftest import _die_with_parent
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_dev_runs_a_stack_another_terminal_uses_and_ctrl_c_leaves_nothing() -> None:
    # Given `sms-worker dev` started as a person would
    dev = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "dev"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_die_with_parent,
    )
    try:
        assert dev.stdout is not None
        banner = "".join(iter(dev.stdout.readline, "Ctrl-C stops everything.\n"))
        assert dev.poll() is None, banner
        exports = dict(re.findall(r"^export (\w+)=(\S+)$", banner, re.MULTILINE))
        ports = {int(port) for port in re.findall(r"http://127\.0\.0\.1:(\d+)/", banner)}
        ports.add(int(exports["REDIS_URL"].rsplit(":", 1)[1].split("/")[0]))
        assert len(ports) == 4, banner  # Redis, the sandbox, the worker's metrics, the inbound service
        children = descendants(dev.pid)
        assert len(children) >= 3, "Redis, the worker and the inbound service run as processes"
        # When another process sends with the printed exports, and waits
        env = {**os.environ, **exports}
        sent = subprocess.run(
            [sys.executable, "-m", "worker.cli", "send", "--to", "+33612345678", "--message", "Hello", "--wait"],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        # Then it is sent, and the sandbox's delivery report reaches the inbound service
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout.split("\n", 1)[1])["status"] == "sent"
        control = SandboxControl(exports["OVH_ENDPOINT"])
        assert [s["message"] for s in control.sent()] == ["Hello"]
        wait_until(lambda: [c for c in control.callbacks() if c["status"] == 200], what="a delivery report delivered")
        # When it gets Ctrl-C (SIGINT, to it alone)
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=60) == 0
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
        dev.stdout.close()
    # Then no process it started is left, and no port is open
    assert [pid for pid in children if alive(pid)] == []
    assert [port for port in ports if listening(port)] == []
