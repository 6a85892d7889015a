"""The fault suite: 3,000 requests through three ``sms-worker run`` processes while everything
that can go wrong does, then every promise checked against the sandbox's own records.

The workers reach Redis and OVH (the sandbox) through fault proxies (``tests.nemesis``), and a
schedule drawn from one seed (``NEMESIS_SEED``, printed at the start) decides every fault:

- Redis: replies held 6-10 s five times (past redis-py's 5 s socket timeout: the command ran,
  the worker never hears of it), replies to scripts dropped after Redis ran them, connections
  reset, a stall whose commands run late (a partition that heals), one restart (append-only
  file on, fsync every second);
- OVH: 10% of jobs calls answered 503, 5% carried out then left without an answer past the read
  timeout, 10% carried out only after 4-8 s (slow: after the worker gave up on them), storms of
  429, answers dropped after OVH acted, connections reset, a blackhole of a few seconds;
- workers: more than ten SIGKILLs (each replaced), three pauses (SIGSTOP) past the lease, one
  SIGTERM.

Traffic: a broadcast (one text, single-receiver requests), unique one-time codes on ``high``,
multi-receiver requests with some invalid numbers, a user whose quota cannot cover all its
requests, and pairs of identical requests (same text, same number: the sender asked for two SMS
to that number).

Checked from the sandbox's records and the results: no request lost, none published twice, no
receiver sent more SMS than requests asked for it, no result claiming an SMS the sandbox never
made or one made for another request (another receiver, text or user; or claimed by two
results), no SMS that no result claims, nothing ``unknown``, credits and the quota balanced.

Run it alone to see its figures: ``pytest tests/test_fault_suite.py -s``; another schedule:
``NEMESIS_SEED=7 pytest tests/test_fault_suite.py -s``.
"""

from __future__ import annotations

import math
import os
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
from contracts.redis_connection import connect
from devstack.embedded_redis import EmbeddedRedis
from tests.conftest import _die_with_parent, process_env
from tests.helpers import read_events
from tests.nemesis.schedule import Fault, Nemesis, Schedule, ScheduleBuilder, proxy_handler
from tests.quota_fixtures import create_user
from worker.accounting.quotas import QuotaStore
from worker.accounting.usage import Period, UsageStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SEED = int(os.environ.get("NEMESIS_SEED", "16"))
WORKERS = 3
LEASE_S = 3
DRAIN_S = 10
CHAOS_S = 60  # the schedule's faults fall within the first CHAOS_S seconds
RESULTS_WAIT_S = 240  # after the chaos, how long every result gets to arrive
QUOTA = 400  # credits of user alice: less than its 600 requests ask for
BROADCAST, CODES, MULTI, ALICE, PAIRS = 1200, 600, 300, 600, 150  # 3,000 requests (PAIRS: 300 of them)


def worker_env(redis_url: str, ovh_endpoint: str, sandbox: Any) -> dict[str, str]:
    return {
        **process_env(redis_url, sandbox),
        "OVH_ENDPOINT": ovh_endpoint,
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


def schedule(seed: int) -> Schedule:
    """Every fault of the run, drawn from ``seed`` (see the module's docstring)."""
    b = ScheduleBuilder(seed)
    for at in b.times(11, within=(2, 50), apart=3):
        b.add(at, "workers", "kill")
    for at in b.times(3, within=(5, 45), apart=10):
        b.add(at, "workers", "pause", seconds=b.uniform(2 * LEASE_S, 3 * LEASE_S))
    b.add(b.uniform(15, 35), "workers", "sigterm")
    b.add(b.uniform(12, 40), "redis-server", "restart", down_s=1.0)
    for at in b.times(3, within=(2, 50), apart=5):
        b.add(at, "sandbox", "storm_429", calls=25)
    for at in b.times(5, within=(3, CHAOS_S - 10), apart=11):
        b.add(at, "redis", "hold_replies", seconds=b.uniform(6, 10))
    for at in b.times(8, within=(1, CHAOS_S)):
        b.add(at, "redis", "drop_replies", count=b.rng.randint(1, 3), matching="EVALSHA", close=b.rng.random() < 0.5)
    for at in b.times(3, within=(1, CHAOS_S)):
        b.add(at, "redis", "reset")
    b.add(b.uniform(5, CHAOS_S), "redis", "blackhole", seconds=b.uniform(6, 8), late=True)
    for at in b.times(8, within=(1, CHAOS_S)):
        b.add(at, "ovh", "drop_replies", count=b.rng.randint(1, 2), matching=r"^POST .*/jobs$")
    for at in b.times(4, within=(1, CHAOS_S)):
        b.add(at, "ovh", "reset")
    for at in b.times(2, within=(5, CHAOS_S), apart=10):
        b.add(at, "ovh", "blackhole", seconds=b.uniform(1, 3))
    return b.build()


class Fleet:
    """The worker processes, kept at ``size`` by a supervisor thread that starts a new one in the
    place of each killed, stopped or exited one; their logs kept in ``directory``.

    Every process is started by the supervisor thread, which lives until ``stop_all``: a
    worker gets SIGTERM when the thread that started it ends (``_die_with_parent``)."""

    def __init__(self, env: dict[str, str], directory: Path, rng: random.Random, size: int) -> None:
        self.env = env
        self.directory = directory
        self.rng = rng
        self.size = size
        self.alive: list[subprocess.Popen[bytes]] = []
        self.paused: set[subprocess.Popen[bytes]] = set()
        self.logs: list[Path] = []
        self.kills = self.pauses = self.restarts = 0
        self.drained: dict[str, Any] = {}
        self.lock = threading.Lock()
        self._watchers: list[threading.Thread] = []
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)

    def start(self) -> None:
        self._supervisor.start()
        deadline = time.monotonic() + 10
        while len(self.alive) < self.size and time.monotonic() < deadline:
            time.sleep(0.05)

    def _supervise(self) -> None:
        """Keep ``size`` workers; restart one that exited by itself, as Kubernetes restarts a pod
        (a worker that starts while Redis does not answer exits 2: ``sms-worker run`` refuses)."""
        while True:
            with self.lock:
                exited = [p for p in self.alive if p.poll() is not None]
                for process in exited:
                    self.alive.remove(process)
                missing = self.size - len(self.alive)
            self.restarts += len(exited)
            for _ in range(missing):
                self._spawn()
            if self._stop.wait(0.2):
                return

    def _spawn(self) -> None:
        log_path = self.directory / f"worker-{len(self.logs)}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "run"], env=self.env, stderr=log_file, preexec_fn=_die_with_parent
            )
        self.logs.append(log_path)
        process.log_path = log_path  # type: ignore[attr-defined]
        with self.lock:
            self.alive.append(process)

    def _pick(self, started: bool = False) -> subprocess.Popen[bytes]:
        """A running worker that is not paused (``rng``: the schedule's choices stay seeded);
        ``started``: one that finished starting (it logged that it consumes). Waits for one: the
        others may be paused, or exited and being started again."""
        deadline = time.monotonic() + 30
        while True:
            with self.lock:
                candidates = [p for p in self.alive if p not in self.paused]
            if started:
                candidates = [p for p in candidates if b"consuming lanes" in p.log_path.read_bytes()]  # type: ignore[attr-defined]
            if candidates or time.monotonic() > deadline:
                return self.rng.choice(candidates)
            time.sleep(0.1)

    def _remove(self, process: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.alive.remove(process)

    def __call__(self, fault: Fault) -> None:
        """The handler of the schedule's ``workers`` target."""
        getattr(self, fault.action)(**fault.kwargs)

    def kill(self) -> None:
        victim = self._pick()
        self._remove(victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        self.kills += 1

    def pause(self, seconds: float) -> None:
        """SIGSTOP one worker for ``seconds`` (past its lease), then SIGCONT."""
        victim = self._pick()
        with self.lock:
            self.paused.add(victim)
        victim.send_signal(signal.SIGSTOP)
        self.pauses += 1

        def resume() -> None:
            victim.send_signal(signal.SIGCONT)
            with self.lock:
                self.paused.discard(victim)

        timer = threading.Timer(seconds, resume)
        timer.start()
        self._watchers.append(timer)

    def sigterm(self) -> None:
        """A clean stop: the worker drains and exits 0; a new one takes its place."""
        victim = self._pick(started=True)
        self._remove(victim)
        victim.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        def exited() -> None:
            self.drained["code"] = victim.wait(DRAIN_S + 30)
            self.drained["seconds"] = time.monotonic() - signalled

        watcher = threading.Thread(target=exited)
        watcher.start()
        self._watchers.append(watcher)

    def join_watchers(self) -> None:
        for watcher in self._watchers:
            watcher.join()

    def stop_all(self) -> None:
        self._stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join()
        for process in self.alive:
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
        for process in self.alive:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def requests() -> Iterator[SendRequest]:
    """3,000 requests, interleaved as several services would send them."""
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
    # Two identical requests to one number: two SMS asked for. A third of the pairs one-time
    # codes (no linger), the rest reminders that share calls (linger): the same number twice in
    # one call.
    pairs = []
    for n in range(PAIRS):
        number = next(numbers)
        if n % 3 == 0:
            message, priority = f"Your code is {900_000 + n}", "high"
        else:
            message, priority = "Pickup reminder: your parcel is waiting.", "medium"
        pairs.append([SendRequest(message=message, receivers=[number], priority=priority) for _ in range(2)])
    streams: list[list[Any]] = [broadcast, codes, multi, alice, pairs]
    while any(streams):
        for stream in streams:
            if stream:
                head = stream.pop(0)
                yield from head if isinstance(head, list) else [head]


def retrying(fn: Callable[[], Any]) -> Any:
    """The test's own Redis calls ride out the restart it causes."""
    for _ in range(200):
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            time.sleep(0.1)
    return fn()


def check(
    all_requests: list[SendRequest],
    results: dict[str, SendResult | None],
    events: list[Any],
    sent: list[dict[str, Any]],
) -> dict[str, Any]:
    """Every figure the suite promises, from the results and the sandbox's records alone."""
    by_id = {s["id"]: s for s in sent}
    requests_of = {r.request_id: r for r in all_requests}
    asked: Counter[str] = Counter()  # requests naming each receiver
    for request in all_requests:
        asked.update(set(request.receivers))
    per_receiver = Counter(s["receiver"] for s in sent)
    published = Counter(e.request_id for e in events if isinstance(e, SendResult))
    claims: Counter[int] = Counter()
    never_made, not_theirs, sent_without_id = [], [], []
    for request_id, result in results.items():
        if result is None:
            continue
        request = requests_of[request_id]
        for outcome in result.receivers:
            if outcome.status != "sent":
                continue
            if outcome.ovh_id is None:
                sent_without_id.append((request_id, outcome.receiver))
                continue
            claims[outcome.ovh_id] += 1
            sms = by_id.get(outcome.ovh_id)
            if sms is None:
                never_made.append((request_id, outcome.ovh_id))
            elif (sms["receiver"], sms["message"], sms["login"]) != (outcome.receiver, request.message, request.user):
                not_theirs.append((request_id, outcome.ovh_id))
    outcomes = [o for r in results.values() if r is not None for o in r.receivers]
    return {
        "lost": [i for i, r in results.items() if r is None],
        "published_not_once": {
            i: published[i] for i, r in results.items() if published[i] > 1 or (r is not None and published[i] == 0)
        },
        "more_sms_than_asked": {n: (c, asked[n]) for n, c in per_receiver.items() if c > asked[n]},
        "claims_sms_never_made": never_made,
        "claims_sms_of_another_request": not_theirs,
        "sms_claimed_twice": {i: n for i, n in claims.items() if n > 1},
        "sms_no_result_claims": sorted(set(by_id) - set(claims)),
        "sent_without_ovh_id": sent_without_id,
        "unknown": [o for o in outcomes if o.status == "unknown"],
    }


def causes(figures: dict[str, Any], sent: list[dict[str, Any]], calls: list[dict[str, Any]]) -> dict[str, int]:
    """Where broken invariants come from, read from the sandbox's records (printed, not asserted):
    an SMS claimed twice whose call carried its number twice (the same number twice in one call)
    or not (another call's SMS taken as proof); a receiver sent too many SMS by a call OVH carried
    out late (a slow call sent again) or not."""
    by_id = {s["id"]: s for s in sent}
    slow = {c["call_id"] for c in calls if "delayed_s" in c}
    per_call = Counter((s["call_id"], s["receiver"]) for s in sent)
    twice = [by_id[i] for i in figures["sms_claimed_twice"] if i in by_id]
    over = set(figures["more_sms_than_asked"])
    return {
        "claimed twice, number twice in its call": sum(1 for s in twice if per_call[s["call_id"], s["receiver"]] > 1),
        "claimed twice, another call's SMS": sum(1 for s in twice if per_call[s["call_id"], s["receiver"]] == 1),
        "too many SMS, one from a slow call": sum(
            1 for n in over if any(s["call_id"] in slow for s in sent if s["receiver"] == n)
        ),
        "too many SMS, no slow call": sum(
            1 for n in over if not any(s["call_id"] in slow for s in sent if s["receiver"] == n)
        ),
    }


def test_every_promise_holds_under_the_nemesis(sandbox, make_proxy, tmp_path) -> None:
    plan = schedule(SEED)
    print(f"\n{plan}")
    server = EmbeddedRedis(appendonly=True).start()
    redis_proxy = make_proxy(server.url, "resp", name="redis")
    ovh_proxy = make_proxy(sandbox.base_url, "http", name="ovh")
    fleet = Fleet(
        worker_env(redis_proxy.url("redis", "/0"), ovh_proxy.url("http", "/1.0"), sandbox),
        tmp_path,
        random.Random(SEED),
        size=WORKERS,
    )
    create_user(sandbox, "alice")
    sandbox.control.set_faults(hold_s=4)
    sandbox.control.add_fault("503", probability=0.10)
    sandbox.control.add_fault("timeout_after_accept", probability=0.05)
    sandbox.control.add_fault("slow", probability=0.10, delay_s=4, delay_max_s=8)
    client = connect(server.url)  # the test's own view: never through the proxy
    producer = SmsProducer(client=client)
    all_requests = list(requests())
    ids = [r.request_id for r in all_requests]
    nemesis = Nemesis(
        plan,
        {
            "workers": fleet,
            "redis-server": lambda fault: server.restart(**fault.kwargs),
            "sandbox": lambda fault: sandbox.control.add_fault("429", next=fault.kwargs["calls"], retry_after=1),
            "redis": proxy_handler(redis_proxy),
            "ovh": proxy_handler(ovh_proxy),
        },
    )
    started = time.monotonic()
    try:
        fleet.start()
        nemesis.start()

        # Publish in waves over ~20 s, while the nemesis works.
        for i in range(0, len(all_requests), 100):
            retrying(lambda chunk=all_requests[i : i + 100]: producer.publish(chunk))
            time.sleep(0.6)
        nemesis.join(CHAOS_S + 60)
        fleet.join_watchers()

        # Wait for every request's result, asking only for those still missing: this process
        # also serves the sandbox and the proxies, which a busy loop here would slow down.
        deadline = time.monotonic() + RESULTS_WAIT_S
        missing = list(ids)
        while missing and time.monotonic() < deadline:
            time.sleep(2)
            missing = [i for i in missing if retrying(lambda i=i: producer.result(i)) is None]
        elapsed = time.monotonic() - started
        results = {i: producer.result(i) for i in ids}
        events = read_events(client)
        quota = QuotaStore(client).get(sandbox.service_name, "alice")
        today = datetime.now(ZoneInfo("Europe/Paris")).date()  # the usage's days (SMS_WORKER_USAGE_TIMEZONE)
        days = Period(today - timedelta(days=1), today + timedelta(days=2), ZoneInfo("Europe/Paris"))
        usage = UsageStore(client).report(sandbox.service_name, days, "user")
    finally:
        nemesis.stop()
        fleet.stop_all()
        logs = "".join(path.read_text(errors="replace") for path in fleet.logs)
        server.stop()

    sent = sandbox.control.sent()
    finals: list[SendResult] = [r for r in results.values() if r is not None]
    figures = check(all_requests, results, events, sent)
    debited = sandbox.control.counters()["credits_debited"]
    usages = [e for e in events if isinstance(e, CreditUsage)]
    alice_sent = sum(s["credits"] for s in sent if s["login"] == "alice")
    alice_results = [r for r in finals if r.user == "alice"]
    calls = sandbox.control.calls()
    ambiguous = len(re.findall(r"may have been carried out", logs))
    looks = [int(n) for n in re.findall(r"; (\d+) OVH lookups in this look", logs)]
    print(
        f"\nfault suite (seed {SEED}): {len(ids)} requests ({2 * PAIRS} in identical pairs), "
        f"{sum(len(r.receivers) for r in all_requests)} receivers, {len(sent)} SMS sent, {len(calls)} jobs calls "
        f"({Counter(str(c['status']) for c in calls)}; {sum(1 for c in calls if 'delayed_s' in c)} slow), "
        f"{fleet.kills} SIGKILLs, {fleet.pauses} SIGSTOPs past the lease, 1 Redis restart, "
        f"{fleet.restarts} workers restarted after exiting by themselves, "
        f"1 SIGTERM (exit {fleet.drained.get('code')} after {fleet.drained.get('seconds', 0):.1f} s); "
        f"Redis proxy {dict(redis_proxy.stats)}; OVH proxy {dict(ovh_proxy.stats)}; "
        f"{ambiguous} calls handed to reconciliation by their worker, {len(looks)} reconciled "
        f"({sum(looks)} OVH lookups); statuses {Counter(r.status for r in finals)}; {elapsed:.0f} s"
    )
    print("invariants:", {name: len(value) for name, value in figures.items()})
    if any(figures.values()):
        print("causes:", causes(figures, sent, calls))
    for name, value in figures.items():
        if value:
            shown = list(value.items())[:5] if isinstance(value, dict) else list(value)[:5]
            print(f"  {name}: {len(value)}, e.g. {shown}")

    # Every request has exactly one result, published exactly once; nothing is unknown; no
    # receiver got more SMS than asked; every SMS is claimed by one result, made for it
    assert {name: value for name, value in figures.items() if value} == {}
    assert redis_proxy.errors == [] and ovh_proxy.errors == []
    # Credits in results equal the sandbox's debits, and CreditUsage events agree
    assert math.isclose(sum(r.credits for r in finals), debited)
    assert math.isclose(sum(u.credits_used for u in usages), debited)
    # The quota was never overspent, and its books balance with the sandbox
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
    assert fleet.drained["code"] == 0
    assert fleet.drained["seconds"] <= DRAIN_S + 5
    # The schedule happened: the faults the issue asks for were all there
    assert plan.count("redis", "hold_replies") == 5 and fleet.kills >= 11 and fleet.pauses == 3
