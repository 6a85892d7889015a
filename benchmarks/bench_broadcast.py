"""Benchmark 1 (and 4): a broadcast of single-receiver requests with the same text.

100,000 requests of one receiver each and the same text, sandbox at 50 ms per call and 20
calls/s, 500 receivers per call. This project's worker (``sms-worker run``, N processes) gets
the whole load; the naive worker (``naive_worker.py`` under the dramatiq CLI) gets a backlog it
cannot finish and is measured over a fixed window (``--naive-seconds``), since at one call per
request it would need more than 80 minutes for the full load. Each side gets a fresh Redis and
sandbox; the workers are started and idle before the first request is queued, and the load is
queued as fast as the producer goes (``SmsProducer.publish``, 1,000 requests per pipeline).

Requests/s end to end = requests / (last result's ``finished_at`` - first enqueue). Worker CPU is
utime + stime of the worker processes (``/proc``) over the same period.

``--base DIR`` adds a column for the worker of another checkout (run from ``DIR/.venv``), e.g. the
commit before a change, measured the same way in the same run.

    python benchmarks/bench_broadcast.py [--requests 100000] [--processes 1] [--base DIR] [--naive-seconds 60] [--quick]
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

from contracts.models import SendRequest

TEXT = "Summer sale: -20% on everything until Sunday at shop.example"


def requests(n: int, prefix: str) -> Any:
    for i in range(n):
        yield SendRequest(request_id=f"{prefix}-{i}", message=TEXT, receivers=[harness.receiver(i)])


def run_ours(n: int, processes: int, *, timeout_s: float, tree: Path | None = None) -> dict[str, Any]:
    name = harness.commit_of(tree) if tree else "ours"
    with harness.Stack(f"broadcast-{name}-{processes}p") as stack:
        stack.start_ours(processes, tree=tree)
        client = stack.redis()
        cpu_before = stack.cpu_seconds()
        log(f"ours ({processes} process(es)): queueing {n:,} requests")
        queued = harness.publish(stack.redis_url, requests(n, "ours"))
        ids, first = queued.ids, queued.first
        log(f"ours: queued in {queued.last - first:.1f} s; waiting for results")
        done = harness.wait_results(client, ids, timeout_s=timeout_s, label="ours")
        cpu = stack.cpu_seconds() - cpu_before
        results = harness.read_results(client, ids)
        calls = harness.call_stats(stack.sandbox.control.calls())
        rss = stack.peak_rss_mb()
    end = max((r["finished_at"] for r in results.values()), default=first)
    return {
        "label": f"{name}, {processes} proc",
        "ours": True,
        "measured": f"{len(ids):,} (all)",
        "done": done,
        "seconds": end - first,
        "rate": done / (end - first) if done else 0.0,
        "calls": calls,
        "cpu_per_1000": cpu / done * 1000 if done else float("nan"),
        "statuses": Counter(r["status"] for r in results.values()),
        "rss": max(rss),
        "queue_s": queued.last - first,
        "window": None,  # the busy period of the calls
    }


def run_naive(n: int, processes: int, *, window_s: float) -> dict[str, Any]:
    with harness.Stack(f"broadcast-naive-{processes}p") as stack:
        stack.start_naive(processes, threads=8)
        client = stack.redis()
        cpu_before = stack.cpu_seconds()
        log(f"naive ({processes} process(es)): queueing a backlog of {n:,} requests, measuring {window_s:.0f} s")
        queued = harness.publish(stack.redis_url, requests(n, "naive"))
        ids, first = queued.ids, queued.first
        time.sleep(max(0.0, first + window_s - time.time()))
        cpu = stack.cpu_seconds() - cpu_before
        results = harness.read_results(client, ids)
        calls = harness.call_stats(stack.sandbox.control.calls(), until=first + window_s)
        rss = stack.peak_rss_mb()
    in_window = [r for r in results.values() if r["finished_at"] <= first + window_s]
    done = len(in_window)
    return {
        "label": f"naive, {processes} proc",
        "ours": False,
        "measured": f"{done:,} in {window_s:.0f} s",
        "done": done,
        "seconds": window_s,
        "rate": done / window_s,
        "calls": calls,
        "cpu_per_1000": cpu / done * 1000 if done else float("nan"),
        "statuses": Counter(r["status"] for r in in_window),
        "rss": max(rss),
        "queue_s": float("nan"),
        "window": window_s,
    }


def report(columns: list[dict[str, Any]], n: int) -> str:
    naive_rate = max((c["rate"] for c in columns if c["label"].startswith("naive")), default=0.0)

    def row(name: str, key: Any, bar: str = "") -> list[Any]:
        return [name, *[key(c) for c in columns], bar]

    calls_bar = 1.05 * math.ceil(n / harness.RECEIVERS_PER_CALL)
    rows = [
        row("requests measured", lambda c: c["measured"]),
        row("requests/s end to end", lambda c: c["rate"], ">= 9,000"),
        row("  x naive (best column)", lambda c: c["rate"] / naive_rate if naive_rate else float("nan"), ">= 30"),
        row("seconds", lambda c: c["seconds"]),
        row("API calls accepted", lambda c: c["calls"].ok, f"<= {calls_bar:.0f}"),
        row("API calls refused (429)", lambda c: c["calls"].refused),
        row("API calls, other errors", lambda c: c["calls"].other),
        row("receivers per accepted call", lambda c: c["calls"].receivers / c["calls"].ok if c["calls"].ok else 0.0),
        row("rate limit used", lambda c: f"{c['calls'].rate_share(harness.RATE_LIMIT, c['window']):.0%}"),
        row("worker CPU s / 1,000 req", lambda c: c["cpu_per_1000"], "<= 0.06"),
        row("worker peak RSS MB", lambda c: c["rss"]),
        row("results", lambda c: " ".join(f"{k} {v:,}" for k, v in sorted(c["statuses"].items()))),
    ]
    title = (
        f"Broadcast: {n:,} single-receiver requests, same text; sandbox {harness.LATENCY_MS:.0f} ms, "
        f"{harness.RATE_LIMIT:.0f} calls/s; {harness.RECEIVERS_PER_CALL} receivers per call"
    )
    body = harness.table(["", *[c["label"] for c in columns], "bar"], rows)
    return f"{title}\n{body}\n{harness.machine()}"


def main(argv: list[str] | None = None, *, default_processes: str = "1") -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000, help="requests for this project's worker")
    parser.add_argument("--processes", default=default_processes, help="worker processes, e.g. 1 or 1,2")
    parser.add_argument("--naive-seconds", type=float, default=60.0, help="measured window of the naive worker")
    parser.add_argument("--skip-naive", action="store_true", help="run this project's worker only")
    parser.add_argument("--base", type=harness.base_tree, help="also run the worker of this checkout (its .venv)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5,000 requests, naive for 15 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.naive_seconds = 5_000, 15.0
    counts = [int(p) for p in args.processes.split(",")]
    if not (1 <= args.requests <= 1_000_000 and all(1 <= p <= 8 for p in counts) and 5 <= args.naive_seconds <= 600):
        parser.error("requests 1..1,000,000, processes 1..8, naive-seconds 5..600")

    columns = []
    timeout_s = max(120.0, args.requests / 200)
    for processes in counts:
        if args.base:
            columns.append(run_ours(args.requests, processes, timeout_s=timeout_s, tree=args.base))
        columns.append(run_ours(args.requests, processes, timeout_s=timeout_s))
    if not args.skip_naive:
        backlog = min(args.requests, int(harness.RATE_LIMIT * args.naive_seconds * 2) + 500)
        for processes in counts:
            columns.append(run_naive(backlog, processes, window_s=args.naive_seconds))
    print(report(columns, args.requests))
    ok = all(c["done"] == args.requests for c in columns if c["ours"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
