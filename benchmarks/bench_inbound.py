"""How many delivery callbacks a second ``sms-worker inbound`` takes, each one's event published.

A bounded local load test: a private Redis, the inbound service in its own process (as ops run
it), and this process as OVH, sending delivery callbacks over loopback from ``--connections``
concurrent keep-alive connections (aiohttp) for ``--seconds``. Every callback is the final
receipt of a distinct SMS, recorded beforehand as the settle step records it, so every one must
publish exactly one ``DeliveryReport``: the run checks that the events on the results queue and
the service's own counter both equal the callbacks answered 200. Run from the repository root:

    python benchmarks/bench_inbound.py [--seconds 10] [--connections 32]

Prints callbacks/s, latency percentiles and the check; exits 1 if any callback failed or any
event is missing. Bounded by ``--seconds`` and ``--max-callbacks``, plus start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import redis

from contracts.redis_connection import connect
from contracts.wire import DEFAULT_RESULTS_QUEUE, queue_key
from devstack.embedded_redis import EmbeddedRedis
from worker.store import keys

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdef"
FIRST_ID = 50_000_000


def record_sms(client: redis.Redis, count: int) -> None:
    """``count`` SMS as the settle step records them (``keys.sms``), one request each."""
    now = repr(time.time())
    with client.pipeline(transaction=False) as pipe:
        for n in range(count):
            pipe.hset(
                keys.sms(FIRST_ID + n),
                mapping={
                    "request_id": f"bench-{n}",
                    "receiver": f"+336{n % 100_000_000:08d}",
                    "reply_to": DEFAULT_RESULTS_QUEUE,
                    "service": "sms-bench-1",
                    "sent_at": now,
                },
            )
            if n % 5000 == 4999:
                pipe.execute()
        pipe.execute()


def start_service(redis_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "SMS_WORKER_INBOUND_TOKEN": TOKEN,
        "SMS_WORKER_INBOUND_PORT": str(port),
        "SMS_WORKER_SERVICE_NAME": "sms-bench-1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "inbound"], env=env, cwd=REPO, stderr=subprocess.DEVNULL
    )


async def wait_ready(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                async with session.get(base + "/readyz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("sms-worker inbound did not get ready")


async def load(base: str, *, connections: int, seconds: float, max_callbacks: int) -> tuple[int, int, list[float]]:
    """Send callbacks until time or count runs out: (answered 200, other answers, latencies)."""
    url = f"{base}/ovh/{TOKEN}/delivery"
    next_n = 0
    ok = failed = 0
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal next_n, ok, failed
        while time.perf_counter() < stop_at and next_n < max_callbacks:
            n, next_n = next_n, next_n + 1
            # One final receipt per SMS, in an API user's format: delivered, one in ten failed. (A
            # pending and a final receipt of one SMS sent at once may cross: the late pending is
            # then rightly not published, and the count would not tell the service's work.)
            params = (
                {"id": FIRST_ID + n, "ptt": 23, "description": 2}
                if n % 10 == 9
                else {"id": FIRST_ID + n, "ptt": 4, "description": 1}
            )
            started = time.perf_counter()
            try:
                async with session.get(url, params=params) as answer:
                    await answer.read()
                    status = answer.status
            except aiohttp.ClientError:
                status = 0
            latencies.append(time.perf_counter() - started)
            if status == 200:
                ok += 1
            else:
                failed += 1

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.gather(*(client(session) for _ in range(connections)))
    return ok, failed, latencies


async def published(base: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as answer:
        for line in (await answer.text()).splitlines():
            if line.startswith('sms_inbound_events_published_total{event="delivery_report"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--max-callbacks", type=int, default=200_000, help="stop after this many callbacks")
    parser.add_argument("--port", type=int, default=18_091, help="port of the inbound service")
    args = parser.parse_args(argv)
    if not (0 < args.seconds <= 120 and 1 <= args.connections <= 256 and 1 <= args.max_callbacks <= 1_000_000):
        parser.error("seconds 0-120, connections 1-256, max-callbacks 1-1,000,000")

    with EmbeddedRedis() as server:
        client = connect(server.url)
        record_sms(client, args.max_callbacks)
        service = start_service(server.url, args.port)
        base = f"http://127.0.0.1:{args.port}"
        try:
            asyncio.run(wait_ready(base))
            started = time.perf_counter()
            ok, failed, latencies = asyncio.run(
                load(base, connections=args.connections, seconds=args.seconds, max_callbacks=args.max_callbacks)
            )
            elapsed = time.perf_counter() - started
            events = client.llen(queue_key(DEFAULT_RESULTS_QUEUE))  # published in the callback's own step
            counted = asyncio.run(published(base))
        finally:
            service.terminate()
            service.wait(timeout=30)

    latencies.sort()
    rate = ok / elapsed
    print(f"inbound delivery callbacks/s: {rate:.0f}  ({args.connections} connections, {elapsed:.1f} s)")
    print(f"callbacks answered 200: {ok}, other answers: {failed}")
    print(f"DeliveryReport events on the results queue: {events}; the service's counter: {counted:.0f}")
    if latencies:
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000
        print(f"latency ms: p50 {p50:.1f}, p99 {p99:.1f}")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; client, service and Redis share them")
    every_event = failed == 0 and events == ok == counted
    print("OK: every callback published its event" if every_event else "FAILED: callbacks and events differ")
    return 0 if every_event else 1


if __name__ == "__main__":
    raise SystemExit(main())
