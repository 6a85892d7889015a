"""Redis through Sentinel: the worker, the inbound service, the CLI and the producer follow a failover.

A real primary, a replica and three Sentinels (``tests/sentinel_cluster.py``), two ``sms-worker
run`` processes, ``sms-worker inbound`` and a producer, all given the same
``redis+sentinel://`` URL. The primary is killed (SIGKILL: a crash) or stalled for good (SIGSTOP:
a partition; commands time out rather than fail) while requests flow.
Run it alone to see the failover's figures: ``pytest tests/test_sentinel.py -s``.
"""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from contracts import SmsProducer
from contracts.redis_connection import connect, parse_sentinel_url
from devstack.embedded_redis import free_port
from tests.conftest import _die_with_parent
from tests.helpers import read_events
from tests.sentinel_cluster import SentinelCluster
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: Requests sent in all, one receiver each, and how many have a result when the primary is killed.
REQUESTS = 300
KILL_AFTER_RESULTS = 100


@pytest.fixture(autouse=True)
def no_watcher_outlives_its_client() -> Iterator[None]:
    """A client's Sentinel watcher ends once the client is gone: none may outlive its test, where
    it would ask Sentinels that are gone, with redis-py's jittered retries, for the rest of the
    session (found by hypothesis in another test of the same process: the global random module
    moved under its draws)."""
    yield
    gc.collect()
    wait_until(
        lambda: not [t for t in threading.enumerate() if t.name == "redis-sentinel-watch"],
        timeout=10,
        what="every Sentinel watcher to end",
    )


def test_sentinel_urls_are_read_with_credentials_tls_and_sentinel_options() -> None:
    url = (
        "rediss+sentinel://app:s%40cret@s1,s2:26380,[::1]:26381/mymaster/2"
        "?ssl_ca_certs=/etc/redis-ca/ca.crt&sentinel_password=spw&socket_timeout=1.5"
    )
    parsed = parse_sentinel_url(url)
    assert parsed.sentinels == [("s1", 26379), ("s2", 26380), ("::1", 26381)]
    assert parsed.service_name == "mymaster"
    assert parsed.connection_kwargs == {
        "username": "app", "password": "s@cret", "db": 2, "ssl": True, "ssl_ca_certs": "/etc/redis-ca/ca.crt",
        "socket_timeout": 1.5,
    }  # fmt: skip
    assert parsed.sentinel_kwargs == {
        "ssl": True, "ssl_ca_certs": "/etc/redis-ca/ca.crt", "socket_timeout": 1.5, "password": "spw"
    }  # fmt: skip
    for bad in (
        "redis+sentinel://h1:1",
        "redis+sentinel:///mymaster",
        "redis+sentinel://h:x/m",
        "redis+sentinel://h/a/1/x",
    ):
        with pytest.raises(ValueError) as caught:
            parse_sentinel_url(bad)
        assert "s%40cret" not in str(caught.value)


def test_after_a_graceful_failover_writes_go_to_the_new_primary_not_the_demoted_one() -> None:
    with SentinelCluster() as cluster:
        # Given a client whose pooled connection is on the primary
        client = connect(cluster.url)
        client.set("before", "1")
        old = cluster.primary()
        # When the Sentinels hand over to the replica (the old primary still takes writes for a while)
        new = cluster.failover()
        assert old.client().role()[0] == b"master", "the demotion comes later: the window this is about"
        # Then the client learns it between commands, and its next write lands on the new primary
        wait_until(
            lambda: client.connection_pool.master_address == ("127.0.0.1", new.port),
            timeout=10,
            what="the client learning the new primary",
        )
        client.set("after", "1")
        assert new.client().get("after") == b"1"
        client.close()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP], ids=["primary killed", "primary stalled"])
def test_a_failover_mid_run_loses_no_request_stops_no_consumer_and_sends_nothing_twice(
    how: signal.Signals, sandbox: Any, sandbox_env: dict[str, str], worker_processes: Any
) -> None:
    with SentinelCluster() as cluster:
        url = cluster.url
        env = {
            "REDIS_URL": url,
            "SMS_WORKER_RATE_LIMIT": "200",
            "SMS_WORKER_RATE_LIMIT_BURST": "20",
            "SMS_WORKER_LINGER_MS__MEDIUM": "50",
            "SMS_WORKER_RECONCILE_GRACE_S": "0.5",
        }
        # Given two workers, the inbound service and a producer, all on the Sentinel URL
        workers = worker_processes(2, **env)
        inbound_port = free_port()
        inbound = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "inbound"],
            env={
                **sandbox_env,
                **env,
                "SMS_WORKER_INBOUND_TOKEN": "t" * 24,
                "SMS_WORKER_INBOUND_PORT": str(inbound_port),
            },
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        try:
            wait_until(lambda: _ready(inbound_port), what="the inbound service ready")
            producer = SmsProducer(url)
            ids: list[str] = []
            send_errors: list[str] = []

            def produce() -> None:
                for n in range(REQUESTS):
                    request_id = f"failover-{n}"
                    while True:  # a send that raised is sent again: the worker keeps one per id
                        try:
                            producer.send(f"+336{10_000_000 + n:08d}", "Failover test", request_id=request_id)
                            break
                        except redis.RedisError as exc:
                            send_errors.append(type(exc).__name__)
                            time.sleep(0.05)
                    ids.append(request_id)
                    time.sleep(0.02)

            # When requests flow, and the primary is killed once a third of them have a result
            sender = threading.Thread(target=produce)
            sender.start()
            wait_until(lambda: len(sandbox.control.sent()) >= KILL_AFTER_RESULTS, timeout=60, what="a third sent")
            killed_at = time.monotonic()
            timings = cluster.fail_primary(how)
            sent_at_kill = len(sandbox.control.sent())
            wait_until(lambda: len(sandbox.control.sent()) > sent_at_kill, timeout=60, what="an SMS after the failover")
            first_send_after_s = time.monotonic() - killed_at
            sender.join(120)
            assert not sender.is_alive()
            # Then every request ends with exactly one result, all sent
            results = {request_id: producer.wait(request_id, timeout=120) for request_id in ids}
            assert Counter(r.status for r in results.values()) == Counter({"sent": REQUESTS})
            client = connect(url)
            published = Counter(e.request_id for e in read_events(client) if e.kind == "send_result")
            assert published == Counter({request_id: 1 for request_id in ids})
            # And the sandbox's records show no receiver sent twice
            receivers = Counter(s["receiver"] for s in sandbox.control.sent())
            assert len(receivers) == REQUESTS and set(receivers.values()) == {1}
            # And no consumer stays stopped: both workers run, nothing waits unseen in an ack set,
            # and a send through the CLI after the failover is sent
            assert [w.poll() for w in workers] == [None, None]
            assert [key for key in client.scan_iter("dramatiq:__acks__.*") if client.scard(key)] == []
            cli_env = {**sandbox_env, "REDIS_URL": url}
            done = subprocess.run(
                [sys.executable, "-m", "worker.cli", "send", "--to", "+33699999999", "--message", "After", "--wait"],
                env=cli_env, capture_output=True, text=True, timeout=90,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            health = subprocess.run(
                [sys.executable, "-m", "worker.cli", "health"], env=cli_env, capture_output=True, text=True, timeout=60
            )
            assert health.returncode == 0 and health.stdout.startswith("2 worker(s)"), health.stdout
            # And the inbound service answers from the new primary
            assert _ready(inbound_port)
            client.close()
            producer.close()
            print(
                f"\nfailover ({how.name}): replica promoted {timings['promoted_s']:.2f} s after the signal, every "
                f"Sentinel agreed at {timings['sentinels_agree_s']:.2f} s, first SMS sent after it at "
                f"{first_send_after_s:.2f} s; {sent_at_kill} of {REQUESTS} sent before it; producer sends retried: "
                f"{len(send_errors)} ({', '.join(sorted(set(send_errors))) or 'none'})"
            )
        finally:
            # stopped while Redis still answers: they drain in a second instead of waiting out
            # their drain time against a cluster that is gone (the fixture's SIGTERM comes later)
            for process in [*workers, inbound]:
                process.send_signal(signal.SIGCONT)
                process.terminate()
            for process in [*workers, inbound]:
                process.wait(30)
