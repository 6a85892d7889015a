"""The attempt protocol as a state machine: hypothesis interleaves what three workers do with a
real Redis and the sandbox, and every promise is checked after each step and at the end.

Each worker is the real thing, built by ``build_app`` but driven by hand, one step at a time:
its dispatcher (``run_once``, or ``Attempts.claim`` then ``Dispatcher.send`` later), its lease
sweep, its reconciler. It reaches Redis and OVH through fault proxies of its own
(``tests.nemesis``), so a step can lose a Redis reply after Redis ran the script, or have its
jobs call refused (503, 429), fail ambiguously (502), lose OVH's answer after OVH acted, or
reach OVH only later (held back by the proxy, then carried out or never). Workers pause (no
step, no lease refresh), crash (forget what they held) and restart with a new lease.

Time. The protocol reads Redis' clock, which a test cannot move, so the test moves the data
instead: ``time_passes`` moves every Redis-millisecond timestamp stored in Redis (hash fields,
sorted-set scores) and the creation time of every SMS in OVH's records back by that much, and
the workers' own clocks (their local lease view) forward. Leases of paused workers expire by
that time too (their key deleted); live workers' are refreshed, as their lease thread would.

What the test assumes, as the design does: OVH carries a call out within ``ALLOWANCE_S``
(connect + read timeouts + the reconciliation grace, less a second) of its leaving, or never: a
request held back by a proxy is delivered only within that time, else dropped. A worker's
steps are atomic with respect to pauses (a pause falls between steps, never between the local
lease check and the request leaving).

Checked after every step: no receiver got more SMS than requests asked for it; no SMS is
claimed by two results or by a result of another receiver, text or user. At the end, once the
faults stop and time passes (``teardown``): every request has exactly one result, published
once; none ``unknown``; every SMS the sandbox made is claimed by a result; the user's quota
balances (nothing reserved, spent = what the sandbox debited).

In CI: 200 examples of up to 50 steps, derandomized (the same every run). Longer, exploring new
examples and shrinking what fails to its shortest steps: ``STATEFUL_EXAMPLES=500 STATEFUL_STEPS=50
pytest tests/test_protocol_stateful.py`` (``STATEFUL_SHRINK=1`` shrinks in the CI mode too).
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from contracts import SendResult, SmsProducer
from contracts.models import SendRequest
from contracts.wire import LANES
from tests.helpers import read_events
from tests.nemesis.proxy import FaultProxy
from tests.quota_fixtures import create_user
from worker.accounting.quotas import QuotaStore, load_config
from worker.app import App, build_app
from worker.attempts.lease import Lease
from worker.attempts.lifecycle import Attempt, Owner
from worker.attempts.reconcile import VISIBILITY_MS
from worker.batching.buffers import Due
from worker.ovhcloud.client import make_client
from worker.retries import REDIS_OUTAGE
from worker.settings import Settings
from worker.store import keys

LONG = "STATEFUL_EXAMPLES" in os.environ
#: Shrink a failure to its shortest steps (minutes): in the long mode, or when asked.
SHRINK = LONG or os.environ.get("STATEFUL_SHRINK") == "1"
EXAMPLES = int(os.environ.get("STATEFUL_EXAMPLES", "200"))
STEPS = int(os.environ.get("STATEFUL_STEPS", "50"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(max(600, EXAMPLES * 3))]

WORKERS = 3
NUMBERS = ["+33612340001", "+33612340002", "+33612340003"]
TEXTS = ["Your code is 1234", "Your parcel is ready"]
#: The protocol's durations (seconds of the test's clock). All are multiples of ``TICK_S``, the
#: smallest time that passes at once, which is longer than an example takes in real time: a
#: comparison of times never depends on how fast the machine runs (hypothesis replays examples
#: and needs them to behave the same).
TICK_S = 5.0
LEASE_S, CONNECT_S, READ_S, GRACE_S = 60.0, 10.0, 20.0, 30.0
#: OVH carries a call out within this long (seconds) of its leaving, or never (see the module).
ALLOWANCE_S = CONNECT_S + READ_S + GRACE_S - TICK_S
QUOTA = 1000.0  # alice's: never reached here; what matters is that it balances
#: What a jobs call meets at OVH: None (answered), refused (503, 429: not carried out), 502
#: (ambiguous, not carried out), its answer lost after OVH acted ("drop"), or held back to reach
#: OVH later or never ("late").
OVH_FAULTS = [None, None, "503", "429", "502", "drop", "late"]
#: Rounds of "time passes, every worker sweeps, reconciles and sends" given to settle at the end.
QUIESCE_ROUNDS = 12
#: The stop event a driven dispatcher gets: never set (it would make it give calls back).
NEVER = threading.Event()


@dataclass
class Rig:
    """One worker process as the protocol sees it: its app and its two proxies."""

    name: str
    app: App
    redis_proxy: FaultProxy
    ovh_proxy: FaultProxy


@dataclass
class World:
    """Built once per test run; each example starts it afresh (``reset``)."""

    client: redis.Redis  # the test's own view of Redis: never through a proxy
    sandbox: Any
    intake: App  # accepts requests directly (intake is not under attack here)
    rigs: list[Rig]
    seen: Counter[str] = field(default_factory=Counter)  # what the examples did, over the whole run

    def reset(self) -> None:
        self.client.flushdb()
        self.sandbox.control.reset(accounts=True)
        create_user(self.sandbox, "alice")
        for rig in self.rigs:
            rig.redis_proxy.clear()
            rig.redis_proxy.discard_requests()
            rig.ovh_proxy.clear()
            rig.ovh_proxy.discard_requests()
        QuotaStore(self.client).apply_config(load_config(self.intake.settings))
        self.intake.refresher.prime(["FR"], None)


def worker_settings(redis_url: str, ovh_endpoint: str, sandbox: Any) -> Settings:
    return Settings(
        redis_url=redis_url,
        ovh_endpoint=ovh_endpoint,
        service_name=sandbox.service_name,
        sender="SANDBOX",
        linger_ms={lane: 0 for lane in LANES},
        lease_s=LEASE_S,
        ovh_connect_timeout_s=CONNECT_S,
        ovh_read_timeout_s=READ_S,
        reconcile_grace_s=GRACE_S,
        reconcile_deadline_s=1e7,  # OVH's records are always readable here: nothing may end unknown
        retry_attempts=3,
        retry_max_wait_s=0.01,
        rate_limit=100_000.0,  # never waited for: a step's Lua steps do not depend on timing
        rate_limit_burst=10_000,
        account_credits_check=False,
        sender_check=False,
        quotas={"alice": {"quota": QUOTA}},
        dispatchers=1,
        reconcilers=1,
        redis_outage_s=30.0,
    )


@pytest.fixture
def world(redis_client, redis_url, sandbox, make_proxy) -> World:
    rigs = []
    for n in range(WORKERS):
        redis_proxy = make_proxy(redis_url, "resp", name=f"redis-{n}")
        ovh_proxy = make_proxy(sandbox.base_url, "http", name=f"ovh-{n}")
        settings_ = worker_settings(redis_proxy.url("redis", "/0"), ovh_proxy.url("http", "/1.0"), sandbox)
        rigs.append(Rig(f"w{n}", build_app(settings_, ovh_credentials=sandbox.credentials), redis_proxy, ovh_proxy))
    intake = build_app(worker_settings(redis_url, sandbox.base_url, sandbox), ovh_credentials=sandbox.credentials)
    return World(redis_client, sandbox, intake, rigs)


# -- the test's clock ------------------------------------------------------------------------------

#: A stored integer this close to Redis' clock (ms) is a Redis-ms timestamp.
_NEAR_MS = 8 * 86_400_000


def _redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _shifted(raw: Any, now_ms: int, shift_ms: int) -> int | None:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return None
    return value - shift_ms if abs(value - now_ms) < _NEAR_MS else None


def move_stored_times_back(client: redis.Redis, shift_ms: int) -> None:
    """Every Redis-ms timestamp stored (hash fields, sorted-set scores) ``shift_ms`` earlier:
    to the protocol, ``shift_ms`` passed. Strings (leases) keep their TTLs: the test expires
    them itself."""
    now_ms = _redis_ms(client)
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"hash":
            changes = {
                f: v for f, raw in client.hgetall(key).items() if (v := _shifted(raw, now_ms, shift_ms)) is not None
            }
            if changes:
                client.hset(key, mapping=changes)
        elif kind == b"zset":
            scores = {
                m: v
                for m, score in client.zrange(key, 0, -1, withscores=True)
                if score == int(score) and (v := _shifted(int(score), now_ms, shift_ms)) is not None
            }
            if scores:
                client.zadd(key, scores)


def move_sandbox_times_back(sandbox: Any, seconds: float) -> None:
    """The same for OVH's records: every SMS the in-process sandbox made, ``seconds`` earlier
    (reconciliation compares their creation times with the attempts' own)."""
    state = sandbox.state
    with state.lock:
        for account in state.accounts.values():
            for sms in account.sms.values():
                sms.created_at -= seconds
        for record in state.sent:
            record["created_at"] -= seconds


# -- the machine ---------------------------------------------------------------------------------


@dataclass
class Worker:
    rig: Rig
    lease: Lease
    paused: bool = False
    crashed: bool = False
    in_hand: list[tuple[Attempt, Owner]] = field(default_factory=list)  # claimed, not sent yet
    held_since: list[float] = field(default_factory=list)  # virtual times its held jobs calls left
    refreshed_at: float = 0.0  # virtual time of its last lease refresh


@dataclass(frozen=True)
class Asked:
    receivers: tuple[str, ...]
    text: str
    user: str | None


class AttemptProtocol(RuleBasedStateMachine):
    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        world.reset()
        self.client = world.client
        self.sandbox = world.sandbox
        self.producer = SmsProducer(client=self.client)
        self.virtual_s = 0.0
        self.asked: dict[str, Asked] = {}
        self.workers = [self._new_worker(rig) for rig in world.rigs]

    # -- plumbing -------------------------------------------------------------------------------

    def clock(self) -> float:
        """The workers' monotonic clock: real time plus the time the test made pass."""
        return time.monotonic() + self.virtual_s

    def _new_worker(self, rig: Rig) -> Worker:
        lease = Lease(
            rig.app.attempts.redis, worker=f"{rig.name}-{uuid.uuid4().hex[:6]}", lease_s=LEASE_S, clock=self.clock
        )
        rig.app.lease = lease
        for dispatcher in rig.app.dispatchers:
            dispatcher.lease = lease
        worker = Worker(rig, lease)
        self._keep_lease(worker)
        return worker

    def _keep_lease(self, worker: Worker) -> None:
        """What the worker's lease thread does while the worker runs."""
        assert worker.lease.refresh(), "a lease refresh with no fault armed must answer"
        worker.refreshed_at = self.virtual_s

    def _arm(self, worker: Worker, ovh: str | None, lose_reply_after: int | None) -> None:
        """Faults for the worker's next step: OVH's for its next jobs call, and the reply of its
        (``lose_reply_after`` + 1)-th Lua step lost after Redis ran it."""
        if lose_reply_after is not None:
            worker.rig.redis_proxy.drop_replies(1, matching="EVALSHA", after=lose_reply_after)
        if ovh in ("503", "429", "502"):
            self.sandbox.control.add_fault(ovh, next=1, retry_after=0)
        elif ovh == "drop":
            worker.rig.ovh_proxy.drop_replies(1, matching=r"^POST .*/jobs$")
        elif ovh == "late":
            worker.rig.ovh_proxy.hold_requests(matching=r"^POST .*/jobs$")

    def _disarm(self, worker: Worker) -> None:
        held = len(worker.rig.ovh_proxy.held_requests())
        worker.held_since += [self.virtual_s] * (held - len(worker.held_since))
        worker.rig.redis_proxy.clear()
        worker.rig.ovh_proxy.clear()
        self.sandbox.control.clear_faults()

    def _step(self, worker: Worker, ovh: str | None, lose_reply_after: int | None, step: Any) -> None:
        """Run one step of a worker as its thread would: a Redis outage ends the step (the
        thread's loop waits and goes on), anything else is a bug and fails the test."""
        self._keep_lease(worker)
        self._arm(worker, ovh, lose_reply_after)
        try:
            step()
        except (*REDIS_OUTAGE, redis.RedisError):
            pass
        finally:
            self._disarm(worker)

    def _due(self) -> bool:
        return isinstance(self.world.intake.buffers.peek(list(LANES)), Due)

    def _live(self, n: int) -> Worker | None:
        worker = self.workers[n]
        return None if worker.paused else worker

    # -- rules ----------------------------------------------------------------------------------

    @initialize(tracking=st.booleans())
    def delivery_tracking(self, tracking: bool) -> None:
        """With or without delivery tracking: reconciliation must not depend on it."""
        for rig in self.world.rigs:
            rig.app.attempts.tracking_ttl_s = 3 * 86_400 if tracking else 0

    @rule(
        receivers=st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=2, unique=True),
        text=st.sampled_from(TEXTS),
        user=st.sampled_from([None, "alice"]),
        lane=st.sampled_from(["high", "medium"]),
    )
    def submit(self, receivers: list[str], text: str, user: str | None, lane: str) -> None:
        request = SendRequest(message=text, receivers=receivers, user=user, priority=lane, no_stop_clause=True)
        assert self.world.intake.accept([request.model_dump(mode="json")], lane=lane) == ["staged"]
        self.asked[request.request_id] = Asked(tuple(receivers), text, user)

    @rule(
        n=st.integers(0, WORKERS - 1),
        ovh=st.sampled_from(OVH_FAULTS),
        lose_reply_after=st.one_of(st.none(), st.integers(0, 8)),
    )
    def dispatch(self, n: int, ovh: str | None, lose_reply_after: int | None) -> None:
        """One round of a dispatcher: slot, claim, call, settle (``Dispatcher.run_once``)."""
        worker = self._live(n)
        if worker is not None and self._due():  # (run_once would wait for work)
            self._step(worker, ovh, lose_reply_after, lambda: worker.rig.app.dispatchers[0].run_once(NEVER))

    @rule(n=st.integers(0, WORKERS - 1), lose_reply=st.booleans())
    def claim(self, n: int, lose_reply: bool) -> None:
        """Claim a call's receivers and stop there: a pause or other workers' steps may follow."""
        worker = self._live(n)
        if worker is None:
            return

        def claim() -> None:
            found = worker.rig.app.buffers.peek(list(LANES))
            owner = worker.lease.owner()
            if not isinstance(found, Due) or owner is None:
                return
            if lose_reply:
                worker.rig.redis_proxy.drop_replies(1, matching="EVALSHA")
            attempt = worker.rig.app.attempts.claim(
                owner, found.lane, found.batch_key, uuid.uuid4().hex, linger_ms=0, max_receivers=500
            )
            if isinstance(attempt, Attempt):
                worker.in_hand.append((attempt, owner))

        self._step(worker, None, None, claim)

    @precondition(lambda self: any(w.in_hand and not w.paused for w in self.workers))
    @rule(
        n=st.integers(0, WORKERS - 1),
        ovh=st.sampled_from(OVH_FAULTS),
        lose_reply_after=st.one_of(st.none(), st.integers(0, 6)),
    )
    def send_claimed(self, n: int, ovh: str | None, lose_reply_after: int | None) -> None:
        """Make the call of an attempt claimed earlier, and settle it (``Dispatcher.send``)."""
        worker = self._live(n)
        if worker is None or not worker.in_hand:
            return
        attempt, owner = worker.in_hand.pop(0)
        self._step(worker, ovh, lose_reply_after, lambda: worker.rig.app.dispatchers[0].send(attempt, owner))

    @rule(n=st.integers(0, WORKERS - 1), lose_reply_after=st.one_of(st.none(), st.integers(0, 3)))
    def sweep(self, n: int, lose_reply_after: int | None) -> None:
        """The lease thread's sweep: take over the attempts of expired leases."""
        worker = self._live(n)
        if worker is None:
            return

        def sweep() -> None:
            self.world.seen["takeovers"] += len(worker.rig.app.attempts.sweep("lease expired"))

        self._step(worker, None, lose_reply_after, sweep)

    @rule(n=st.integers(0, WORKERS - 1), lose_reply_after=st.one_of(st.none(), st.integers(0, 3)))
    def reconcile(self, n: int, lose_reply_after: int | None) -> None:
        """One look of a reconciler at the next ambiguous attempt due."""
        worker = self._live(n)
        if worker is None:
            return
        reconciler = worker.rig.app.reconcilers[0]

        def look() -> None:
            found = worker.rig.app.attempts.next_ambiguous(VISIBILITY_MS)
            if isinstance(found, Attempt) and reconciler.reconcile(found):
                self.world.seen["ambiguous calls reconciled"] += 1

        self._step(worker, None, lose_reply_after, look)

    @precondition(lambda self: any(w.held_since for w in self.workers))
    @rule()
    def ovh_carries_out_late(self) -> None:
        """Jobs calls held back reach OVH now, still within the time OVH is assumed to take."""
        for worker in self.workers:
            if worker.held_since and self.virtual_s - min(worker.held_since) < ALLOWANCE_S:
                worker.rig.ovh_proxy.release_requests()
                worker.held_since.clear()

    @rule(n=st.integers(0, WORKERS - 1))
    def pause(self, n: int) -> None:
        self.workers[n].paused = True

    @rule(n=st.integers(0, WORKERS - 1))
    def resume(self, n: int) -> None:
        worker = self.workers[n]
        if worker.paused and not worker.crashed:
            worker.paused = False

    @rule(n=st.integers(0, WORKERS - 1))
    def crash(self, n: int) -> None:
        """The process dies: what it held in hand is forgotten; its lease expires in time."""
        worker = self.workers[n]
        worker.paused = worker.crashed = True
        worker.in_hand.clear()

    @precondition(lambda self: any(w.crashed for w in self.workers))
    @rule(n=st.integers(0, WORKERS - 1))
    def restart(self, n: int) -> None:
        """A new process in the crashed one's place: a new lease."""
        if self.workers[n].crashed:
            held = self.workers[n].held_since
            self.workers[n] = self._new_worker(self.workers[n].rig)
            self.workers[n].held_since = held  # calls in flight at the network stay in flight

    @rule(seconds=st.sampled_from([TICK_S, 6 * TICK_S, 18 * TICK_S]))
    def time_passes(self, seconds: float) -> None:
        self.virtual_s += seconds
        move_stored_times_back(self.client, int(seconds * 1000))
        move_sandbox_times_back(self.sandbox, seconds)
        for worker in self.workers:
            if worker.held_since and self.virtual_s - min(worker.held_since) >= ALLOWANCE_S:
                worker.rig.ovh_proxy.discard_requests()  # too late: OVH never carries them out
                worker.held_since.clear()
            if not worker.paused:
                self._keep_lease(worker)
            elif self.virtual_s - worker.refreshed_at >= LEASE_S:
                self._expire_lease(worker)

    def _expire_lease(self, worker: Worker) -> None:
        for key in self.client.scan_iter(match=keys.lease("*")):
            if self.client.get(key) == worker.lease.worker.encode():
                self.client.delete(key)

    # -- invariants -----------------------------------------------------------------------------

    def _results(self) -> dict[str, SendResult | None]:
        return {request_id: self.producer.result(request_id) for request_id in self.asked}

    @invariant()
    def no_receiver_gets_more_sms_than_asked(self) -> None:
        asked = Counter(r for a in self.asked.values() for r in a.receivers)
        sent = Counter(s["receiver"] for s in self.sandbox.control.sent())
        assert {n: (c, asked[n]) for n, c in sent.items() if c > asked[n]} == {}, "more SMS than asked"

    @invariant()
    def no_sms_claimed_twice_or_by_another_request(self) -> None:
        by_id = {s["id"]: s for s in self.sandbox.control.sent()}
        claims: Counter[int] = Counter()
        for request_id, result in self._results().items():
            if result is None:
                continue
            asked = self.asked[request_id]
            for outcome in result.receivers:
                if outcome.status == "sent":
                    assert outcome.ovh_id is not None, (request_id, outcome)
                    claims[outcome.ovh_id] += 1
                    sms = by_id.get(outcome.ovh_id)
                    assert sms is not None, f"{request_id} claims SMS {outcome.ovh_id}, which OVH never made"
                    made_for = (sms["receiver"], sms["message"], sms["login"])
                    assert made_for == (outcome.receiver, asked.text, asked.user), (request_id, outcome, sms)
        assert {i: n for i, n in claims.items() if n > 1} == {}, "an SMS claimed by two results"

    # -- the end --------------------------------------------------------------------------------

    def _settled(self) -> bool:
        lanes_due = sum(self.client.zcard(keys.due(lane)) for lane in LANES)
        return not (self.client.zcard(keys.INFLIGHT) or self.client.zcard(keys.RECONCILE) or lanes_due)

    def quiesce(self) -> None:
        """The faults stop, held calls never reach OVH, every worker comes back and time passes
        until nothing is left to do (or ``QUIESCE_ROUNDS`` are over)."""
        for worker in self.workers:
            worker.rig.ovh_proxy.discard_requests()
            worker.held_since.clear()
            if worker.crashed:
                self._expire_lease(worker)
                self.workers[self.workers.index(worker)] = self._new_worker(worker.rig)
        for worker in self.workers:
            worker.paused = False
            worker.in_hand.clear()  # a worker coming back finds its claims taken over, never resumed
        for _ in range(QUIESCE_ROUNDS):
            if self._settled():
                return
            self.time_passes(LEASE_S + ALLOWANCE_S)
            for n in range(len(self.workers)):
                self.sweep(n, None)
                for _ in range(20):
                    if not self.client.zcard(keys.RECONCILE):
                        break
                    self.reconcile(n, None)
                for _ in range(20):
                    if not self._due():
                        break
                    self.dispatch(n, None, None)

    def _count(self) -> None:
        """What this example exercised (the test fails if the run as a whole missed one)."""
        seen = self.world.seen
        calls = self.sandbox.control.calls()
        seen["jobs calls"] += len(calls)
        seen["jobs calls refused"] += sum(1 for c in calls if c["status"] in (429, 502, 503))
        for rig in self.world.rigs:
            seen["Redis replies lost"] += rig.redis_proxy.stats["replies_dropped"]
            seen["OVH answers lost"] += rig.ovh_proxy.stats["replies_dropped"]
            seen["jobs calls carried out late"] += rig.ovh_proxy.stats["requests_delivered_late"]
            for name in ("replies_dropped", "requests_delivered_late"):
                rig.redis_proxy.stats[name] = rig.ovh_proxy.stats[name] = 0

    def teardown(self) -> None:
        self.quiesce()
        self._count()
        results = self._results()
        unfinished = [
            self.client.hgetall(keys.attempt(c.decode()))
            for index in (keys.INFLIGHT, keys.RECONCILE)
            for c in self.client.zrange(index, 0, -1)
        ]
        lost = [r for r, result in results.items() if result is None]
        assert lost == [], f"requests without a result: {lost}; attempts left: {unfinished}"
        published = Counter(e.request_id for e in read_events(self.client) if isinstance(e, SendResult))
        assert published == Counter(list(self.asked)), "a result published more or less than once"
        assert [r for r in results.values() if r is not None and r.status == "unknown"] == []
        self.no_receiver_gets_more_sms_than_asked()
        self.no_sms_claimed_twice_or_by_another_request()
        claimed = {o.ovh_id for r in results.values() if r is not None for o in r.receivers if o.status == "sent"}
        sent = self.sandbox.control.sent()
        assert {s["id"] for s in sent} == claimed, "an SMS that no result claims"
        quota = QuotaStore(self.client).get(self.sandbox.service_name, "alice")
        alice_sent = sum(s["credits"] for s in sent if s["login"] == "alice")
        assert quota is not None and quota.reserved == 0 and math.isclose(quota.spent, alice_sent)


def test_the_attempt_protocol_keeps_its_promises(world: World) -> None:
    world.seen.clear()
    run_state_machine_as_test(
        lambda: AttemptProtocol(world),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=not LONG,
            database=None,
            phases=[p for p in Phase if SHRINK or p is not Phase.shrink],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    # The run exercised what it claims to: calls, refusals, lost replies and answers, late calls
    print(f"\nstateful test: {EXAMPLES} examples of up to {STEPS} steps: {dict(world.seen)}")
    wanted = (
        "jobs calls",
        "jobs calls refused",
        "Redis replies lost",
        "OVH answers lost",
        "jobs calls carried out late",
    )
    assert all(world.seen[name] > 0 for name in wanted), world.seen


def test_an_sms_made_for_one_user_is_never_proof_for_another_users_request(world: World) -> None:
    """Found by the state machine (seed-free: these steps replay it), after issue 16's fixes."""
    machine = AttemptProtocol(world)
    machine.delivery_tracking(True)
    # Given the same code to the same number, once for user alice and once for the account
    machine.submit(receivers=[NUMBERS[0]], text=TEXTS[0], user="alice", lane="high")
    machine.submit(receivers=[NUMBERS[0]], text=TEXTS[0], user=None, lane="high")
    # When the account's call fails with a 502 (OVH did nothing), and alice's call reaches OVH
    # only after its worker gave up on it (within the time OVH is assumed to take)
    machine.dispatch(n=1, ovh="502", lose_reply_after=None)
    machine.dispatch(n=2, ovh="late", lose_reply_after=None)
    machine.ovh_carries_out_late()
    machine.time_passes(6 * TICK_S)
    machine.reconcile(n=0, lose_reply_after=None)
    machine.reconcile(n=0, lose_reply_after=None)
    # Then no request claims the SMS OVH made for the other's call (through users/alice/jobs,
    # paid by alice's quota), and at the end each got an SMS of its own
    machine.no_sms_claimed_twice_or_by_another_request()
    machine.teardown()


def hget_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_hget", {}).get("calls", 0))


def test_a_look_reads_each_candidate_sms_mark_once(world: World) -> None:
    """Found by the fault suite through the nemesis: every look read each candidate SMS's proof
    mark once per candidate (n² Redis reads), which stalled the suite's Redis."""
    # Given 60 SMS of other calls in OVH's records, from the same sender, in the call's window
    machine = AttemptProtocol(world)
    ovh = make_client(world.sandbox.base_url, **world.sandbox.credentials)
    others = [f"+336123{n:05d}" for n in range(60)]
    path = f"/sms/{world.sandbox.service_name}/jobs"
    ovh.post(path, message="Other news", receivers=others, sender="SANDBOX", noStopClause=True)
    # and a call of two receivers (so the listing is not filtered by receiver) that fails with
    # a 502: ambiguous, nothing sent
    machine.submit(receivers=NUMBERS[:2], text=TEXTS[0], user=None, lane="high")
    machine.dispatch(n=0, ovh="502", lose_reply_after=None)
    machine.time_passes(TICK_S)
    # When a reconciler looks at it
    before = hget_calls(world.client)
    machine.reconcile(n=1, lose_reply_after=None)
    # Then each candidate's proof mark is read about once, not once per candidate
    assert hget_calls(world.client) - before < 3 * len(others)
