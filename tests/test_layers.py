"""The architecture holds: the layering contract, and no sandbox or developer tool in production.

``lint-imports`` checks the contracts in pyproject.toml (layers, no cycle between sibling
packages, the sandbox written apart, production never importing the sandbox or ``devstack``).
That covers the imports written in the code; the tests below check what a real process loads:
``python -X importtime`` lists every module imported, at start and while it serves.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis
import requests

from contracts import SmsProducer
from tests.after_send.conftest import TOKEN, free_port
from tests.conftest import _die_with_parent
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
DEVELOPER_PACKAGES = ("ovh_sandbox", "devstack")


def imported(importtime_output: str) -> set[str]:
    """Module names from ``-X importtime`` lines (``import time: self | cumulative | name``)."""
    names = set()
    for line in importtime_output.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def developer_modules(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in DEVELOPER_PACKAGES)


def test_the_layering_contract_holds() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_importing_the_cli_and_its_help_load_no_sandbox_module() -> None:
    for command in (["-c", "import worker.cli"], ["-m", "worker.cli", "--help"], ["-m", "worker.cli", "run", "--help"]):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", *command], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr[-2000:]
        names = imported(done.stderr)
        assert "worker.cli" in names
        assert developer_modules(names) == [], command


def test_a_running_worker_loads_no_sandbox_module_while_it_sends(
    redis_client: redis.Redis, redis_url: str, sandbox_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a real `sms-worker run` process, every import it makes written to its stderr
    env = {**sandbox_env, "SMS_WORKER_SENDER": "SANDBOX", "SMS_WORKER_POLL_MS": "200"}
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "worker.cli", "run"],
        env=env,
        # a file, not a pipe: -X importtime writes more than a pipe holds, and the process
        # would block on its stderr before it ever sends
        stderr=(tmp_path / "stderr.txt").open("wb"),
        preexec_fn=_die_with_parent,
    )
    try:
        # When it sends an SMS end to end
        producer = SmsProducer(redis_url=redis_url)
        request_id = producer.send("+33612345678", "layers", no_stop_clause=True)
        assert producer.wait(request_id, timeout=60).status == "sent"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        stderr = (tmp_path / "stderr.txt").read_bytes()
    # Then it exited cleanly, having loaded the pipeline and nothing of the sandbox or the tools
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    names = imported(stderr.decode(errors="replace"))
    assert {"worker.app", "worker.attempts.dispatcher", "worker.intake.accept"} <= names
    assert developer_modules(names) == []


def test_a_running_inbound_service_loads_no_sandbox_module(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "SMS_WORKER_INBOUND_TOKEN": TOKEN,
        "SMS_WORKER_SERVICE_NAME": "sms-sandbox-1",
        "SMS_WORKER_INBOUND_PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "worker.cli", "inbound"],
        env=env,
        # a file, not a pipe: -X importtime writes more than a pipe holds, and the process
        # would block on its stderr before it ever sends
        stderr=(tmp_path / "stderr.txt").open("wb"),
        preexec_fn=_die_with_parent,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> Any:
        try:
            return requests.get(base + "/readyz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(ready)
        # a delivery report for an SMS it does not know: answered, and the whole path loaded
        answer = requests.get(f"{base}/ovh/{TOKEN}/delivery", params={"id": "1", "ptt": "13", "dlr": "1"}, timeout=5)
        assert answer.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        stderr = (tmp_path / "stderr.txt").read_bytes()
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    names = imported(stderr.decode(errors="replace"))
    assert "worker.after_send.service" in names
    assert developer_modules(names) == []


def test_the_image_copies_no_sandbox_and_no_developer_tool() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = re.findall(r"^COPY\s+(?!--from)(.+)$", dockerfile, flags=re.MULTILINE)
    sources = {part for line in copied for part in line.split()[:-1]}
    assert {"contracts", "worker"} <= sources
    assert not sources & {".", *DEVELOPER_PACKAGES}
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert set(DEVELOPER_PACKAGES) <= set(ignored), "kept out of the build context too"
