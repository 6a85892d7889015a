"""The fault suite: 3,000 requests through three ``sms-worker run`` processes while everything
that can go wrong does, then every promise checked against the sandbox's own records.

Faults: 10% of jobs calls answered 503, 5% carried out by OVH and then left without an answer
past the read timeout, storms of 429, more than ten SIGKILLs of random workers (each replaced),
one worker paused (SIGSTOP) longer than its lease then resumed, one restart of Redis (append-only
file on, fsync every second), and one SIGTERM. Traffic: a broadcast (one text, single-receiver
requests), unique one-time codes on ``high``, multi-receiver requests with some invalid numbers,
and a user whose quota cannot cover all its requests.

Run it alone to see its figures: ``pytest tests/test_fault_suite.py -s``.
"""

from __future__ import annotations

import math
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from contracts import CreditUsage, SendResult, SmsProducer
from contracts.models import SendRequest
from devstack.embedded_redis import EmbeddedRedis
from tests.conftest import _die_with_parent, process_env
from tests.helpers import read_events
from tests.quota_fixtures import create_user
from worker.accounting.quotas import QuotaStore
from worker.accounting.usage import Period, UsageStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

WORKERS = 3
LEASE_S = 3
DRAIN_S = 10
QUOTA = 400  # credits of user alice: less than its 600 requests ask for
BROADCAST, CODES, MULTI, ALICE = 1500, 600, 300, 600


def worker_env(redis_url: str, sandbox: Any) -> dict[str, str]:
    return {
        **process_env(redis_url, sandbox),
        "SMS_WORKER_SENDER": "SANDBOX",
        "SMS_WORKER_QUOTAS": f'{{"alice": {{"quota": {QUOTA}}}}}',
        "SMS_WORKER_LEASE_S": str(LEASE_S),
        "SMS_WORKER_DRAIN_S": str(DRAIN_S),
        "SMS_WORKER_RECONCILE_GRACE_S": "2",
        "SMS_WORKER_OVH_READ_TIMEOUT_S": "2",
        "SMS_WORKER_RETRY_MAX_WAIT_S": "2",
        "SMS_WORKER_RATE_LIMIT": "60",
        "SMS_WORKER_RATE_LIMIT_BURST": "10",
        "SMS_WORKER_LINGER_MS__MEDIUM": "300",
        "SMS_WORKER_LINGER_MS__LOW": "300",
        "SMS_WORKER_POLL_MS": "200",
        "SMS_WORKER_THREADS": "2",
    }


class Fleet:
    """The worker processes, each replaced when killed; their logs kept in ``directory``."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.env = env
        self.directory = directory
        self.alive: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.kills = 0
        self.lock = threading.Lock()

    def spawn(self) -> subprocess.Popen[bytes]:
        log_path = self.directory / f"worker-{len(self.logs)}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "run"], env=self.env, stderr=log_file, preexec_fn=_die_with_parent
            )
        self.logs.append(log_path)
        with self.lock:
            self.alive.append(process)
        return process

    def pick(self, rng: random.Random, but: subprocess.Popen[bytes] | None = None) -> subprocess.Popen[bytes]:
        with self.lock:
            return rng.choice([p for p in self.alive if p is not but])

    def remove(self, process: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.alive.remove(process)

    def kill_one(self, rng: random.Random, but: subprocess.Popen[bytes] | None) -> None:
        victim = self.pick(rng, but)
        self.remove(victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        self.kills += 1
        self.spawn()

    def stop_all(self) -> None:
        for process in self.alive:
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
        for process in self.alive:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def requests() -> Iterator[SendRequest]:
    """3,000 requests, each with receivers of its own, interleaved as several services would send."""
    numbers = iter(f"+336{50_000_000 + n:08d}" for n in range(10_000))
    broadcast = [SendRequest(message="Store closed Monday.", receivers=[next(numbers)]) for _ in range(BROADCAST)]
    codes = [
        SendRequest(message=f"Your code is {n:06d}", receivers=[next(numbers)], priority="high", no_stop_clause=True)
        for n in range(CODES)
    ]
    multi = []
    for n in range(MULTI):
        receivers = [next(numbers), next(numbers), next(numbers)]
        if n % 10 == 0:
            receivers[1] = "12"  # not a phone number: set aside, the others sent
        multi.append(SendRequest(message=f"Delivery slot {n % 30}", receivers=receivers, priority="low"))
    alice = [
        SendRequest(message="Member offer", receivers=[next(numbers)], user="alice", priority="medium")
        for _ in range(ALICE)
    ]
    streams = [broadcast, codes, multi, alice]
    while any(streams):
        for stream in streams:
            if stream:
                yield stream.pop(0)


def retrying(fn: Callable[[], Any]) -> Any:
    """The test's own Redis calls ride out the restart it causes."""
    for _ in range(200):
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            time.sleep(0.1)
    return fn()


def test_every_promise_holds_under_faults(sandbox, tmp_path) -> None:
    rng = random.Random(8)
    server = EmbeddedRedis(appendonly=True).start()
    fleet = Fleet(worker_env(server.url, sandbox), tmp_path)
    create_user(sandbox, "alice")
    sandbox.control.set_faults(hold_s=4)
    sandbox.control.add_fault("503", probability=0.10)
    sandbox.control.add_fault("timeout_after_accept", probability=0.05)
    client = redis.Redis.from_url(server.url)
    producer = SmsProducer(client=client)
    all_requests = list(requests())
    ids = [r.request_id for r in all_requests]
    sigterm: dict[str, Any] = {}
    started = time.monotonic()
    try:
        for _ in range(WORKERS):
            fleet.spawn()

        # Publish in waves over ~20 s, while the chaos below runs.
        def publish() -> None:
            for i in range(0, len(all_requests), 100):
                retrying(lambda chunk=all_requests[i : i + 100]: producer.publish(chunk))
                time.sleep(0.6)

        publisher = threading.Thread(target=publish)
        publisher.start()
        paused = None
        for second in range(26):
            time.sleep(1)
            if second in (2, 12, 20):  # a 429 storm
                sandbox.control.add_fault("429", next=25, retry_after=1)
            if second % 2 == 0 and fleet.kills < 11:
                fleet.kill_one(rng, but=paused)
            if second == 7:  # paused past its lease, then resumed
                paused = fleet.pick(rng)
                paused.send_signal(signal.SIGSTOP)
            if second == 7 + 2 * LEASE_S and paused is not None:
                paused.send_signal(signal.SIGCONT)
                paused = None
            if second == 15:
                server.restart(down_s=1.0)
            if second == 18:  # a clean stop: drains, exits 0
                victim = fleet.pick(rng)
                fleet.remove(victim)
                victim.send_signal(signal.SIGTERM)
                signalled = time.monotonic()

                def exited(process: subprocess.Popen[bytes] = victim, at: float = signalled) -> None:
                    sigterm["code"] = process.wait(DRAIN_S + 30)
                    sigterm["seconds"] = time.monotonic() - at

                watcher = threading.Thread(target=exited)
                watcher.start()
                fleet.spawn()
        publisher.join()
        watcher.join()

        # Wait for every request's result.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            missing = [i for i in ids if retrying(lambda i=i: producer.result(i)) is None]
            if not missing:
                break
            time.sleep(1)
        elapsed = time.monotonic() - started
        results = {i: producer.result(i) for i in ids}
        events = read_events(client)
        quota = QuotaStore(client).get(sandbox.service_name, "alice")
        today = datetime.now(ZoneInfo("Europe/Paris")).date()  # the usage's days (SMS_WORKER_USAGE_TIMEZONE)
        days = Period(today - timedelta(days=1), today + timedelta(days=2), ZoneInfo("Europe/Paris"))
        usage = UsageStore(client).report(sandbox.service_name, days, "user")
    finally:
        fleet.stop_all()
        logs = "".join(path.read_text(errors="replace") for path in fleet.logs)
        server.stop()

    # Every request has exactly one result, published exactly once
    assert [i for i, r in results.items() if r is None] == []
    published = Counter(e.request_id for e in events if isinstance(e, SendResult))
    assert published == Counter(ids)
    finals: list[SendResult] = [r for r in results.values() if r is not None]
    # No receiver got two SMS
    sent = sandbox.control.sent()
    per_receiver = Counter(s["receiver"] for s in sent)
    assert [n for n, count in per_receiver.items() if count > 1] == []
    # No result claims an SMS the sandbox never accepted, none calls failed one it did, none is unknown
    by_id = {s["id"]: s for s in sent}
    outcomes = [o for r in finals for o in r.receivers]
    for outcome in outcomes:
        if outcome.status == "sent":
            assert outcome.ovh_id in by_id and by_id[outcome.ovh_id]["receiver"] == outcome.receiver
        else:
            assert outcome.receiver not in per_receiver, outcome
    assert [o for o in outcomes if o.status == "unknown"] == []
    assert {o.receiver for o in outcomes if o.status == "sent"} == set(per_receiver)
    # Credits in results equal the sandbox's debits, and CreditUsage events agree
    debited = sandbox.control.counters()["credits_debited"]
    assert math.isclose(sum(r.credits for r in finals), debited)
    usages = [e for e in events if isinstance(e, CreditUsage)]
    assert math.isclose(sum(u.credits_used for u in usages), debited)
    # The quota was never overspent, and its books balance with the sandbox
    alice_sent = sum(s["credits"] for s in sent if s["login"] == "alice")
    alice_results = [r for r in finals if r.user == "alice"]
    assert alice_sent <= QUOTA
    assert math.isclose(sum(r.credits for r in alice_results), alice_sent)
    # (the quota refused some; calls that failed gave their credits back, so more than 400 fit in)
    assert [r for r in alice_results if r.error is not None and r.error.code == "quota_exceeded"]
    assert quota is not None and quota.reserved == 0 and math.isclose(quota.spent, alice_sent)
    assert quota.left is not None and quota.left >= 0
    # sms-worker usage counted every SMS and credit once, per user, as the sandbox billed them
    billed: dict[str, list[float]] = {}
    for s in sent:
        billed.setdefault(s["login"] or "", []).append(s["credits"])
    assert {row.value: row.sms for row in usage} == {login: len(c) for login, c in billed.items()}
    for row in usage:
        assert row.value is not None and math.isclose(row.credits, sum(billed[row.value])) and row.unknown == 0
    # The worker stopped with SIGTERM drained and exited 0 within its drain time
    assert sigterm["code"] == 0
    assert sigterm["seconds"] <= DRAIN_S + 5

    calls = sandbox.control.calls()
    ambiguous = len(re.findall(r"may have been carried out", logs))
    looks = [int(n) for n in re.findall(r"; (\d+) OVH lookups in this look", logs)]
    print(
        f"\nfault suite: {len(ids)} requests, {sum(len(r.receivers) for r in all_requests)} receivers, "
        f"{len(sent)} SMS sent, {len(calls)} jobs calls "
        f"({Counter(str(c['status']) for c in calls)}), {fleet.kills} SIGKILLs, 1 SIGSTOP, 1 Redis restart, "
        f"1 SIGTERM (exit {sigterm['code']} after {sigterm['seconds']:.1f} s); "
        f"{ambiguous} calls handed to reconciliation by their worker, {len(looks)} reconciled "
        f"({sum(looks)} OVH lookups); statuses {Counter(r.status for r in finals)}; {elapsed:.0f} s"
    )
