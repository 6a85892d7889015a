"""The shared rate limiter against a real Redis server: bound, priority, 429 backoff.

Every assertion counts grants (times from the Redis server's clock, order from the grant
sequence) rather than timing single calls.
"""

from __future__ import annotations

import bisect
import json
import math
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.waiting import wait_until
from worker.ovhcloud.rate_limit import Grant, RateLimiter
from worker.settings import Settings
from worker.store import keys

KEY = "test-consumer"

#: One hammering process: bulk threads wait for slots in turn on every lane but the top one, and
#: (in the process told ``code``) a code thread tries the top lane once, never waiting, each time
#: its lane has taken nothing for 1.5 slot intervals by the Redis clock. Prints the grants
#: (Redis time, seq, lane) and the code thread's tries (granted or not).
HAMMER = """
import json, sys, threading, time
from contracts.redis_connection import connect
from worker.ovhcloud.rate_limit import RateLimiter

url, key, rate, burst, headroom, threads, start_s, end_s, code = sys.argv[1:10]
rate, start_s, end_s = float(rate), float(start_s), float(end_s)
client = connect(url)
grants, tries, lock = [], [], threading.Lock()

def record(grant):
    with lock:
        grants.append([grant.at_s, grant.seq, grant.lane])

limiter = RateLimiter(client, key=key, rate_per_s=rate, burst=int(burst), headroom=float(headroom), on_grant=record)
bulk = ("lookup", "medium", "low", "veryLow", "background")

def redis_now():
    seconds, micros = client.time()
    return seconds + micros / 1e6

def hammer(n):
    while redis_now() < end_s:
        limiter.acquire(bulk[n % len(bulk)], timeout_s=0.5)

def codes():
    last = 0.0
    while True:
        now = redis_now()  # the script's clock reads at least this when it decides
        if now >= end_s:
            return
        if now - last < 1.5 / rate:
            time.sleep(0.002)
            continue
        granted = limiter.acquire("high", timeout_s=0)
        with lock:
            tries.append(granted)
            if granted:
                last = max(g[0] for g in grants if g[2] == "high")

time.sleep(max(start_s - redis_now(), 0))
workers = [threading.Thread(target=hammer, args=(n,)) for n in range(int(threads))]
workers += [threading.Thread(target=codes)] if code == "1" else []
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
json.dump({"grants": grants, "tries": tries}, sys.stdout)
"""


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def most_in_window(times: list[float], width_s: float, *, closed: bool) -> int:
    """The most grants in any window ``[t, t + width]`` (``closed``) or ``[t, t + width)``."""
    ordered = sorted(times)
    side = bisect.bisect_right if closed else bisect.bisect_left
    return max((side(ordered, t + width_s) - i for i, t in enumerate(ordered)), default=0)


def in_threads(targets: list[Callable[[], None]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    return threads


def hammer(redis_url: str, *, rate: float, burst: int, headroom: float, seconds: float, start_s: float) -> dict:
    """Three processes of four bulk threads each, the first with a code thread too, from ``start_s``."""
    root = Path(__file__).resolve().parent.parent
    args = [redis_url, KEY, repr(rate), str(burst), repr(headroom), "4", repr(start_s), repr(start_s + seconds)]
    processes = [
        subprocess.Popen([sys.executable, "-c", HAMMER, *args, str(int(n == 0))], stdout=subprocess.PIPE, cwd=root)
        for n in range(3)
    ]
    outputs = [json.loads(process.communicate(timeout=60)[0]) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0]
    assert all(output["grants"] for output in outputs), "a process was starved"
    return {
        "grants": [grant for output in outputs for grant in output["grants"]],
        "tries": [granted for output in outputs for granted in output["tries"]],
    }


@pytest.mark.slow
def test_three_processes_keep_the_bound_per_lane_class_and_codes_never_wait(
    redis_client: redis.Redis, redis_url: str
) -> None:
    rate, burst, headroom, seconds = 20.0, 2, 1.0, 4.0
    # Given three processes whose bulk threads keep every lane but the top one waiting, and a code
    # thread trying the top lane once (no wait) whenever it took nothing for 1.5 slot intervals
    start_s = redis_now(redis_client) + 2.0
    ran = hammer(redis_url, rate=rate, burst=burst, headroom=headroom, seconds=seconds, start_s=start_s)
    grants, tries = ran["grants"], ran["tries"]
    times = [at_s for at_s, _seq, _lane in grants]
    bulk_times = [at_s for at_s, _seq, lane in grants if lane != "high"]

    # Then every grant was counted once, by all processes together
    assert sorted(seq for _at, seq, _lane in grants) == list(range(1, len(grants) + 1))
    # and every window of T seconds held at most burst + headroom + rate x T grants, and at most
    # burst + rate x T of every lane but the top one
    for width_s in (0.05, 0.5, 1.0, 2.0):
        assert most_in_window(times, width_s, closed=True) <= math.floor(burst + headroom + rate * width_s)
        assert most_in_window(bulk_times, width_s, closed=True) <= math.floor(burst + rate * width_s)
    # and the code thread was granted at once each time, though bulk waiters always wanted the slot
    assert len(tries) >= 10 and all(tries), f"{tries.count(False)} of {len(tries)} code tries refused"
    # and the bulk lanes had waiters all along: they took most of what the codes left (a loaded
    # host wakes some waiters late, hence the slack), the lookup lane among them
    lanes = Counter(lane for _at, _seq, lane in grants)
    assert len(bulk_times) >= 0.5 * (rate * seconds - len(tries)), lanes
    assert lanes["high"] == len(tries) and lanes["lookup"] > 0, lanes


def test_a_later_high_waiter_gets_the_next_slot(redis_client: redis.Redis) -> None:
    grants: list[Grant] = []
    limiter = RateLimiter(redis_client, key=KEY, rate_per_s=4, burst=1, on_grant=grants.append)
    # Given a drained bucket and five low-lane waiters already waiting
    while limiter.acquire("low", timeout_s=0):
        pass
    grants.clear()
    early = in_threads([lambda: limiter.acquire("low") for _ in range(5)])
    wait_until(lambda: limiter.waiting("low") + len(grants) == 5, timeout=5, every=0.005)

    # When a high-lane waiter arrives, then three more low-lane waiters
    high = in_threads([lambda: limiter.acquire("high")])
    wait_until(lambda: limiter.waiting("high") == 1 or any(g.lane == "high" for g in grants), timeout=5, every=0.005)
    granted_when_high_waited = limiter.snapshot().granted
    late = in_threads([lambda: limiter.acquire("low") for _ in range(3)])
    for thread in early + high + late:
        thread.join(10)

    # Then the high waiter took the next slot after it registered: before every low waiter
    # still waiting then (arrived before it or after it)
    (high_grant,) = [g for g in grants if g.lane == "high"]
    assert high_grant.seq <= granted_when_high_waited + 1
    lows_after_high = [g for g in grants if g.lane == "low" and g.seq > high_grant.seq]
    assert len(lows_after_high) >= 3 + 1, "no early low waiter was still waiting: the test proved little"
    assert len(grants) == 9


def test_lanes_are_served_highest_first(redis_client: redis.Redis) -> None:
    grants: list[Grant] = []
    limiter = RateLimiter(redis_client, key=KEY, rate_per_s=10, burst=2, headroom=0.5, on_grant=grants.append)
    # Given a pause (a 429 with Retry-After 1 s) during which waiters of every lane line up,
    # the lowest lanes first
    limiter.on_rate_limited(retry_after_s=1.0)
    threads = []
    for lane in ("background", "veryLow", "low", "medium", "lookup", "high"):
        threads += in_threads([lambda lane=lane: limiter.acquire(lane) for _ in range(2)])
        wait_until(lambda lane=lane: limiter.waiting(lane) == 2, timeout=5, every=0.005)
    snapshot = limiter.snapshot()
    assert snapshot.paused_until_s is not None and snapshot.now_s < snapshot.paused_until_s
    # When the pause ends
    for thread in threads:
        thread.join(10)
    # Then the slots went to the lanes in priority order, whatever the arrival order: codes,
    # then lookups a result waits on, then the bulk lanes, then background reads
    by_seq = [g.lane for g in sorted(grants, key=lambda g: g.seq)]
    expected = ["high", "lookup", "medium", "low", "veryLow", "background"]
    assert by_seq == [lane for lane in expected for _ in range(2)]
    assert min(g.at_s for g in grants) >= snapshot.paused_until_s


def test_bulk_lanes_leave_the_headroom_to_codes(redis_client: redis.Redis) -> None:
    # Given a full bucket of burst 2 + headroom 1, refilling slowly (one call per 10 s)
    limiter = RateLimiter(redis_client, key=KEY, rate_per_s=0.1, burst=2, headroom=1.0)
    # Then bulk lanes (and lookups) take the burst, and not the headroom
    assert limiter.acquire("low", timeout_s=0) and limiter.acquire("lookup", timeout_s=0)
    assert not limiter.acquire("medium", timeout_s=0) and not limiter.acquire("lookup", timeout_s=0)
    # which a code takes at once; then nothing is left for anyone
    assert limiter.acquire("high", timeout_s=0)
    assert not limiter.acquire("high", timeout_s=0) and not limiter.acquire("low", timeout_s=0)
    assert limiter.snapshot().granted == 3


def test_a_dead_high_waiter_stops_blocking_lower_lanes(redis_client: redis.Redis) -> None:
    grants: list[Grant] = []
    limiter = RateLimiter(redis_client, key=KEY, rate_per_s=10, burst=1, on_grant=grants.append)
    # Given a high-lane waiter that registered and then vanished (its registration expires)
    expires_s = redis_now(redis_client) + 0.5
    redis_client.zadd(keys.rate_waiters(KEY, "high"), {"ghost": int(expires_s * 1_000_000)})
    # When a low-lane waiter asks for a slot with tokens in the bucket
    assert limiter.acquire("low", timeout_s=5)
    # Then it waited for the registration to expire, not forever
    (grant,) = grants
    assert grant.at_s >= expires_s
    assert limiter.waiting("high") == 0


def test_an_unknown_lane_and_a_timeout(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, key=KEY, rate_per_s=1, burst=1)
    with pytest.raises(ValueError, match="unknown lane"):
        limiter.acquire("urgent")
    assert limiter.acquire("low", timeout_s=0)
    assert not limiter.acquire("low", timeout_s=0.05)
    assert limiter.waiting("low") == 0  # a waiter that gives up leaves at once


def test_a_429_pauses_every_caller_and_cuts_the_rate_once(redis_client: redis.Redis) -> None:
    grants: list[Grant] = []
    lock = threading.Lock()

    def record(grant: Grant) -> None:
        with lock:
            grants.append(grant)

    limiter = RateLimiter(redis_client, key=KEY, rate_per_s=20, burst=5, on_grant=record)
    other_replica = RateLimiter(redis_client, key=KEY, rate_per_s=20, burst=5, on_grant=record)
    # Given four calls in flight, granted before OVH started answering 429
    in_flight = threading.Barrier(4)

    def call_then_429() -> None:
        assert limiter.acquire("low", timeout_s=1)
        in_flight.wait(5)
        # When all four come back 429 with Retry-After 1 s (each from the thread that acquired)
        limiter.on_rate_limited(retry_after_s=1.0)

    for thread in in_threads([call_then_429] * 4):
        thread.join(5)
    grants.clear()
    snapshot = limiter.snapshot()

    # Then the rate was cut once (one round), for every replica
    assert limiter.current_rate() == other_replica.current_rate() == 10.0
    assert snapshot.paused_until_s is not None and snapshot.paused_until_s >= snapshot.now_s + 0.9
    # and no caller of any replica is granted before Retry-After, nor a burst after it
    stop_s = snapshot.paused_until_s + 0.5
    hammer = [lambda r=r: _hammer(r, redis_client, stop_s) for r in (limiter, other_replica) * 3]
    for thread in in_threads(hammer):
        thread.join(10)
    times = [g.at_s for g in grants]
    assert times and min(times) >= snapshot.paused_until_s
    # at most one call's worth at the end of the pause, then the cut rate (10/s) for 0.5 s
    assert len([t for t in times if t <= stop_s]) <= 1 + 10 * 0.5


def _hammer(limiter: RateLimiter, client: redis.Redis, stop_s: float) -> None:
    while redis_now(client) < stop_s:
        limiter.acquire("medium", timeout_s=0.2)


def test_a_429_storm_goes_down_to_the_floor_and_recovers_on_successes(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, key=KEY, rate_per_s=20, burst=2, min_rate_per_s=2, increase_per_success=1)
    # Given a 429 for each new call, round after round
    rates = []
    for _ in range(5):
        assert limiter.acquire("low", timeout_s=2)
        limiter.on_rate_limited(retry_after_s=None)
        rates.append(limiter.current_rate())
    # Then the rate halved each round, down to the floor
    assert rates == [10.0, 5.0, 2.5, 2.0, 2.0]

    # When calls succeed, the rate climbs back one step per success, to the configured rate
    for expected in (3.0, 4.0, 5.0):
        limiter.on_success()
        assert limiter.current_rate() == expected
    for _ in range(30):
        limiter.on_success()
    assert limiter.current_rate() == 20.0


def test_successes_during_a_pause_do_not_raise_the_rate(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, key=KEY, rate_per_s=8, burst=1)
    limiter.on_rate_limited(retry_after_s=2.0)
    limiter.on_success()  # a call granted before the 429, answered late
    assert limiter.current_rate() == 4.0
    assert not limiter.acquire("high", timeout_s=0.3)


def test_settings_read_the_rate_limit_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().rate_limit, Settings().rate_limit_burst) == (1.0, 1)
    monkeypatch.setenv("SMS_WORKER_RATE_LIMIT", "2.5")
    monkeypatch.setenv("SMS_WORKER_RATE_LIMIT_BURST", "4")
    assert (Settings().rate_limit, Settings().rate_limit_burst) == (2.5, 4)
