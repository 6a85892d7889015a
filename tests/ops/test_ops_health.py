"""``/healthz`` follows the dispatch loops, ``/readyz`` follows Redis and OVH, ``sms-worker health`` asks them."""

from __future__ import annotations

import os
import subprocess
import sys

from contracts import SmsProducer
from devstack.embedded_redis import EmbeddedRedis
from tests.ops.endpoints import get, ops_port
from tests.waiting import wait_until
from worker.app import build_app
from worker.ops.health import Liveness
from worker.settings import Settings


def test_liveness_names_the_loop_that_stopped_ticking() -> None:
    now = [100.0]
    liveness = Liveness(clock=lambda: now[0])
    liveness.register("dispatch-0", 5.0)
    liveness.register("lease", 1.0)
    now[0] += 3.0
    liveness.tick("dispatch-0")
    assert [(s.name, s.silent_s) for s in liveness.stale()] == [("lease", 3.0)]
    liveness.tick("lease")
    liveness.unregister("dispatch-0")
    now[0] += 4.0
    assert [s.name for s in liveness.stale()] == ["lease"]
    assert liveness.names() == ["lease"]


def test_healthz_fails_while_a_dispatcher_is_stuck_in_a_call(make_app, redis_client, sandbox) -> None:
    # Given a worker whose dispatch loops must show progress every 5 s, and OVH that takes a
    # call and then holds its answer past the worker's read timeout (9 s)
    app = make_app(metrics_port=0, metrics_host="127.0.0.1", dispatch_liveness_s=5.0, ovh_read_timeout_s=9.0)
    port = ops_port(app)
    assert wait_until(lambda: get(port, "/healthz") == (200, "alive\n"))
    sandbox.control.set_faults(hold_s=12)
    sandbox.control.add_fault("timeout_after_accept", next=1)
    # When a code is sent, its dispatcher is stuck in the call
    producer = SmsProducer(client=redis_client)
    request_id = producer.send("+33612345678", "Your code is 1234", priority="high", no_stop_clause=True)
    # Then /healthz fails and names that loop
    status, body = wait_until(lambda: (answer := get(port, "/healthz"))[0] == 503 and answer)
    assert "sms-dispatch-" in body and "has not ticked" in body
    # and once the call times out (reconciled: OVH had taken it), the loop ticks again and /healthz recovers
    assert producer.wait(request_id, timeout=30).status == "sent"
    assert wait_until(lambda: get(port, "/healthz")[0] == 200)


def test_readyz_fails_while_redis_is_gone(sandbox) -> None:
    # Given a worker on a Redis of its own, ready
    server = EmbeddedRedis().start()
    settings = Settings(
        redis_url=server.url,
        ovh_endpoint=sandbox.base_url,
        service_name=sandbox.service_name,
        sender="SANDBOX",
        metrics_port=0,
        metrics_host="127.0.0.1",
    )
    app = build_app(settings, ovh_credentials=sandbox.credentials).start()
    restarted = None
    try:
        port = ops_port(app)
        assert wait_until(lambda: get(port, "/readyz") == (200, "ready\n"))
        # When Redis stops, /readyz fails and says why
        server.stop()
        status, body = get(port, "/readyz")
        assert status == 503 and body.startswith("Redis does not answer")
        # and /metrics is still served, without the gauges it cannot read
        status, body = get(port, "/metrics")
        assert status == 200 and "sms_worker_jobs_calls_total" in body and "sms_worker_queue_depth{" not in body
        # When Redis is back on the same port, /readyz recovers
        restarted = EmbeddedRedis(port=server.port).start()
        assert wait_until(lambda: get(port, "/readyz") == (200, "ready\n"))
    finally:
        app.stop()
        for redis_server in (restarted, server):
            if redis_server is not None:
                redis_server.stop()


def test_readyz_fails_when_the_default_sender_is_not_enabled(make_app) -> None:
    app = make_app(metrics_port=0, metrics_host="127.0.0.1", sender="PENDINGSNDR")
    status, body = wait_until(
        lambda: (answer := get(ops_port(app), "/readyz"))[0] == 503 and "sender" in answer[1] and answer
    )
    assert "'PENDINGSNDR'" in body and "not enabled" in body and "\n" not in body.rstrip("\n")


def health(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "worker.cli", "health", *args]
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_health_command_asks_the_worker(make_app, redis_url) -> None:
    app = make_app(metrics_port=0, metrics_host="127.0.0.1")
    port = str(ops_port(app))
    wait_until(lambda: get(int(port), "/readyz")[0] == 200)
    alive = health(SMS_WORKER_METRICS_PORT=port, SMS_WORKER_METRICS_HOST="127.0.0.1")
    assert (alive.returncode, alive.stdout) == (0, "alive\n"), alive.stderr
    ready = health("--ready", SMS_WORKER_METRICS_PORT=port)
    assert (ready.returncode, ready.stdout) == (0, "ready\n"), ready.stderr
    # without a metrics port there is no worker to ask: Redis is asked whether a worker holds a lease
    redis_only = health(REDIS_URL=redis_url)
    assert (redis_only.returncode, redis_only.stdout.split(" (")[0]) == (0, "1 worker(s) hold a lease in Redis")


def test_health_without_a_metrics_port_fails_when_no_worker_runs(redis_client, redis_url) -> None:
    # Given a Redis that answers, and no worker running against it
    done = health(REDIS_URL=redis_url)
    # Then health does not say healthy
    assert done.returncode == 1
    assert done.stdout == "no worker is running: Redis answers, but no sms-worker run holds a lease in it\n"


def test_health_command_fails_with_one_line_when_nothing_answers() -> None:
    nobody = health(SMS_WORKER_METRICS_PORT="1")
    assert nobody.returncode == 1
    assert nobody.stdout.count("\n") == 1 and "no worker answers" in nobody.stdout
    no_redis = health(REDIS_URL="redis://127.0.0.1:1/0")
    assert no_redis.returncode == 1 and no_redis.stdout.startswith("Redis does not answer")
