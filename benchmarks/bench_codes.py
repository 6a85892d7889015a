"""Benchmark 2: unique texts (one-time codes), where batching cannot help.

5,000 requests of one receiver each, every text different (a code), lane ``high``, all queued
at once; sandbox at 50 ms per call and 20 calls/s. Each text needs its own jobs call, so the
best any worker can do is to use the whole rate limit: 5,000 calls at 20/s, 250 s. Measured:
the share of the rate limit used (accepted calls per second over the busy period, from the
sandbox's call log, / 20), the calls OVH refused (429), and the time from ``send()`` (the
request queued) to its result (the result's ``finished_at``, when ``SmsProducer.wait`` wakes).

This project's worker runs the whole load. The naive worker gets the same burst and is measured
over a window (``--naive-seconds``): its 429-refused messages wait out dramatiq's retry backoff
(15 s, 30 s, 60 s, ...), so finishing all of them takes far longer. Its rate-limit share is
accepted calls over the window; a percentile that falls on an unfinished request shows as
``> window``.

``--base DIR`` adds a column for the worker of another checkout (run from ``DIR/.venv``).

    python benchmarks/bench_codes.py [--requests 5000] [--base DIR] [--naive-seconds 150] [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import harness
from harness import log

from contracts.models import Priority, SendRequest


def requests(n: int, prefix: str) -> Any:
    for i in range(n):
        code = (i * 7919 + 104729) % 1_000_000
        yield SendRequest(
            request_id=f"{prefix}-{i}",
            message=f"Your code is {code:06d}",
            receivers=[harness.receiver(i)],
            priority=Priority.high,
            no_stop_clause=True,
        )


def measure(stack: harness.Stack, n: int, prefix: str, *, wait_s: float, window_s: float | None) -> dict[str, Any]:
    client = stack.redis()
    cpu_before = stack.cpu_seconds()
    queued = harness.publish(stack.redis_url, requests(n, prefix))
    log(f"{prefix}: {n:,} codes queued in {queued.last - queued.first:.1f} s")
    if window_s is None:
        harness.wait_results(client, queued.ids, timeout_s=wait_s, label=prefix)
        until = float("inf")
    else:
        time.sleep(max(0.0, queued.first + window_s - time.time()))
        until = queued.first + window_s
    cpu = stack.cpu_seconds() - cpu_before
    results = harness.read_results(client, queued.ids)
    calls = harness.call_stats(stack.sandbox.control.calls(), until=until)
    latencies = []
    for request_id, sent_at in zip(queued.ids, queued.times, strict=True):
        result = results.get(request_id)
        finished = result["finished_at"] if result and result["finished_at"] <= until else math.inf
        latencies.append(finished - sent_at)
    done = sum(1 for x in latencies if x < math.inf)
    return {
        "done": done,
        "calls": calls,
        "share": calls.rate_share(harness.RATE_LIMIT, window_s),
        "p50": harness.percentile(latencies, 50),
        "p99": harness.percentile(latencies, 99),
        "cpu_per_1000": cpu / done * 1000 if done else math.nan,
        "statuses": Counter(r["status"] for r in results.values() if r["finished_at"] <= until),
        "window": window_s,
    }


def run_ours(n: int, tree: Path | None = None) -> dict[str, Any]:
    name = harness.commit_of(tree) if tree else "ours"
    with harness.Stack(f"codes-{name}") as stack:
        stack.start_ours(1, tree=tree)
        column = measure(stack, n, name, wait_s=n / harness.RATE_LIMIT * 2 + 60, window_s=None)
    return {"label": f"{name}, 1 proc", "measured": f"{n:,} (all)", **column}


def run_naive(n: int, window_s: float) -> dict[str, Any]:
    with harness.Stack("codes-naive") as stack:
        stack.start_naive(1, threads=8)
        column = measure(stack, n, "naive", wait_s=window_s, window_s=window_s)
    return {"label": "naive, 1 proc", "measured": f"{column['done']:,} of {n:,} in {window_s:.0f} s", **column}


def _seconds(value: float, window: float | None) -> str:
    return f"> {window:.0f}" if value == math.inf else f"{value:.2f}"


def report(columns: list[dict[str, Any]], n: int) -> str:
    def row(name: str, key: Any, bar: str = "") -> list[Any]:
        return [name, *[key(c) for c in columns], bar]

    rows = [
        row("requests finished", lambda c: c["measured"]),
        row("rate limit used", lambda c: f"{c['share']:.1%}", ">= 99%"),
        row("API calls accepted", lambda c: c["calls"].ok),
        row("API calls refused (429)", lambda c: c["calls"].refused, "0 (ours)"),
        row("API calls, other errors", lambda c: c["calls"].other),
        row("busy period s", lambda c: c["window"] or c["calls"].span_s),
        row("send -> result p50 s", lambda c: _seconds(c["p50"], c["window"])),
        row("send -> result p99 s", lambda c: _seconds(c["p99"], c["window"])),
        row("worker CPU s / 1,000 req", lambda c: c["cpu_per_1000"]),
        row("results", lambda c: " ".join(f"{k} {v:,}" for k, v in sorted(c["statuses"].items()))),
    ]
    title = (
        f"Unique texts (one-time codes): {n:,} single-receiver requests queued at once, lane high; "
        f"sandbox {harness.LATENCY_MS:.0f} ms, {harness.RATE_LIMIT:.0f} calls/s"
    )
    body = harness.table(["", *[c["label"] for c in columns], "bar"], rows)
    return f"{title}\n{body}\n{harness.machine()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5_000, help="codes queued at once")
    parser.add_argument("--naive-seconds", type=float, default=150.0, help="measured window of the naive worker")
    parser.add_argument("--skip-naive", action="store_true", help="run this project's worker only")
    parser.add_argument("--base", type=harness.base_tree, help="also run the worker of this checkout (its .venv)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 codes, naive for 20 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.naive_seconds = 300, 20.0
    if not (1 <= args.requests <= 50_000 and 5 <= args.naive_seconds <= 900):
        parser.error("requests 1..50,000, naive-seconds 5..900")
    columns = [run_ours(args.requests, args.base)] if args.base else []
    columns.append(run_ours(args.requests))
    if not args.skip_naive:
        columns.append(run_naive(args.requests, args.naive_seconds))
    print(report(columns, args.requests))
    return 0 if all(c["done"] == args.requests for c in columns if not c["label"].startswith("naive")) else 1


if __name__ == "__main__":
    sys.exit(main())
