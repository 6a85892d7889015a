"""Several ``sms-worker run`` processes share the work without sending anything twice."""

from __future__ import annotations

import math
from collections import Counter

from contracts import SendResult, SmsProducer
from tests.helpers import read_events


def test_two_worker_processes_send_each_receiver_once(worker_processes, redis_client, sandbox) -> None:
    worker_processes(2, "--threads", "4", "--dispatchers", "2", SMS_WORKER_LINGER_MS__LOW="300")
    producer = SmsProducer(client=redis_client)
    receivers = [f"+336{40_000_000 + n:08d}" for n in range(400)]
    request_ids = [producer.send(number, "Replicated hello", priority="low") for number in receivers]
    request_ids.append(producer.send("+33612345678", "Your code is 1234", priority="high", no_stop_clause=True))
    results = [producer.wait(request_id, timeout=60) for request_id in request_ids]
    assert {r.status for r in results} == {"sent"}
    assert Counter(s["receiver"] for s in sandbox.control.sent()) == Counter([*receivers, "+33612345678"])
    published = [e.request_id for e in read_events(redis_client) if isinstance(e, SendResult)]
    assert Counter(published) == Counter(request_ids)
    assert math.isclose(sum(r.credits for r in results), sandbox.control.counters()["credits_debited"])


def test_run_refuses_to_start_without_a_broker_or_credentials(tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVH_", "REDIS_URL", "SMS_WORKER_"))}
    env["HOME"] = str(tmp_path)  # no ~/.ovh.conf
    no_redis = subprocess.run(
        [sys.executable, "-m", "worker.cli", "run"], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert no_redis.returncode == 2
    assert "REDIS_URL is not set" in no_redis.stderr
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    no_credentials = subprocess.run(
        [sys.executable, "-m", "worker.cli", "run"], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert no_credentials.returncode == 2
    assert "OVH credentials are missing" in no_credentials.stderr
