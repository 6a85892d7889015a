"""Benchmark 5: peak memory of a worker during a 1,000,000-receiver campaign.

1,000 requests of 1,000 receivers each with the same text, streamed by the producer (it never
holds the campaign: requests are built and queued 10 at a time, 10,000 receivers per
pipeline); sandbox at 50 ms per call and 20 calls/s, 500 receivers per call. Measured: each
worker process's peak RSS (``VmHWM`` in ``/proc/<pid>/status``; for the dramatiq CLI, its
largest process), Redis's peak memory (``used_memory_peak``: the batch buffers live there), Redis
memory per staged receiver (sampled every half second: ``MEMORY USAGE`` of the batch buffers over
the receivers they hold, at the sample holding the most) and per SMS tracked for delivery reports
(one ``MEMORY USAGE`` of a tracking hash), and how far the campaign got. The naive worker makes
one call per 1,000-receiver request and is given the same campaign for ``--naive-seconds``.

The bar: worker RSS under 150 MB at 1,000,000 receivers.

    python benchmarks/bench_memory.py [--receivers 1000000] [--naive-seconds 120] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import harness
import redis
from harness import log

from contracts.models import SendRequest
from contracts.wire import LANES
from worker.store import keys

TEXT = "Black Friday: up to -50% on everything, today only at shop.example"


def campaign(receivers: int, prefix: str) -> Any:
    for n, start in enumerate(range(0, receivers, 1000)):
        numbers = [harness.receiver(i) for i in range(start, min(start + 1000, receivers))]
        yield SendRequest(request_id=f"{prefix}-{n}", message=TEXT, receivers=numbers)


class StagedSampler(threading.Thread):
    """Every half second: receivers staged in the batch buffers and the bytes those buffers take."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.stop = threading.Event()
        self.peak = (0, 0)  # (receivers staged, bytes of their buffers) at the sample holding the most

    def run(self) -> None:
        while not self.stop.wait(0.5):
            staged = used = 0
            for lane in LANES:
                for batch_key in self.client.zrange(keys.due(lane), 0, -1):
                    buffer = keys.buffer(batch_key.decode())
                    staged += int(self.client.llen(buffer))
                    used += int(self.client.memory_usage(buffer) or 0)
            if staged > self.peak[0]:
                self.peak = (staged, used)


def tracking_bytes(client: redis.Redis) -> float:
    """Bytes of one SMS's tracking hash (kept for delivery reports), nan when none is left."""
    for key in client.scan_iter(match=keys.sms("*"), count=1000):
        return float(client.memory_usage(key) or 0)
    return float("nan")


def run(side: str, receivers: int, *, window_s: float | None) -> dict[str, Any]:
    with harness.Stack(f"memory-{side}") as stack:
        if side == "ours":
            stack.start_ours(1)
        else:
            stack.start_naive(1, threads=8)
        client = stack.redis()
        baseline = max(stack.peak_rss_mb())
        sampler = StagedSampler(stack.redis())
        sampler.start()
        queued = harness.publish(stack.redis_url, campaign(receivers, side), chunk=10)
        log(f"{side}: {receivers:,} receivers queued in {queued.last - queued.first:.1f} s")
        # 2,000 calls at 20/s is 100 s: allow for a slow accept stage; the naive worker gets a window
        timeout_s = receivers / 1000 + 600 if window_s is None else queued.first + window_s - time.time()
        done = harness.wait_results(client, queued.ids, timeout_s=timeout_s, label=side)
        seconds = time.time() - queued.first
        calls = harness.call_stats(stack.sandbox.control.calls())
        peak = stack.peak_rss_mb()
        redis_peak = int(client.info("memory")["used_memory_peak"]) / 2**20
        sampler.stop.set()
        sampler.join()
        tracked = tracking_bytes(client) if side == "ours" else float("nan")
    staged, staged_bytes = sampler.peak
    return {
        "label": f"{side}, 1 proc",
        "done": f"{done:,} of {len(queued.ids):,}",
        "sent": calls.receivers,
        "seconds": seconds,
        "baseline": baseline,
        "peak": max(peak),
        "redis": redis_peak,
        "staged": staged,
        "per_staged": staged_bytes / staged if staged else float("nan"),
        "tracked": tracked,
        "calls": calls,
    }


def report(columns: list[dict[str, Any]], receivers: int) -> str:
    def row(name: str, key: Any, bar: str = "") -> list[Any]:
        return [name, *[key(c) for c in columns], bar]

    rows = [
        row("worker peak RSS MB (VmHWM)", lambda c: c["peak"], "< 150"),
        row("  at start, idle", lambda c: c["baseline"]),
        row("Redis peak memory MB", lambda c: c["redis"]),
        row("receivers staged at most", lambda c: c["staged"] if c["label"].startswith("ours") else "-"),
        row("Redis bytes per staged receiver", lambda c: c["per_staged"]),
        row("Redis bytes per SMS tracked (3 days)", lambda c: c["tracked"]),
        row("requests finished", lambda c: c["done"]),
        row("receivers sent", lambda c: c["sent"]),
        row("seconds", lambda c: c["seconds"]),
        row("API calls accepted", lambda c: c["calls"].ok),
        row("API calls refused (429)", lambda c: c["calls"].refused),
    ]
    title = (
        f"Memory: campaign of {receivers:,} receivers (requests of 1,000, same text); sandbox "
        f"{harness.LATENCY_MS:.0f} ms, {harness.RATE_LIMIT:.0f} calls/s, "
        f"{harness.RECEIVERS_PER_CALL} receivers per call"
    )
    body = harness.table(["", *[c["label"] for c in columns], "bar"], rows)
    return f"{title}\n{body}\n{harness.machine()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", type=int, default=1_000_000, help="receivers of the campaign")
    parser.add_argument("--naive-seconds", type=float, default=120.0, help="how long the naive worker runs")
    parser.add_argument("--skip-naive", action="store_true", help="run this project's worker only")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50,000 receivers, naive for 20 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.receivers, args.naive_seconds = 50_000, 20.0
    if not (1_000 <= args.receivers <= 5_000_000 and 5 <= args.naive_seconds <= 900):
        parser.error("receivers 1,000..5,000,000, naive-seconds 5..900")
    columns = [run("ours", args.receivers, window_s=None)]
    if not args.skip_naive:
        columns.append(run("naive", args.receivers, window_s=args.naive_seconds))
    print(report(columns, args.receivers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
