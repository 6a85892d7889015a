"""Benchmark: a 100,000-row mail-merge campaign at OVH's fair use, bulk mode against requests mode.

One run, one stack (``harness.Stack``: a private Redis, the sandbox in its own process limited to
1 call/s per consumer key, as OVH's fair use), one ``sms-worker run`` process at
``SMS_WORKER_RATE_LIMIT=1`` and ``sms-worker inbound`` serving the receivers documents:

1. **bulk**: ``campaign send --via bulk`` on a 100,000-row file in the cookbook's layout (three
   variables: every row its own text). Measured from the command's start: OVH calls made (all
   of them, and the jobs calls among them), and the time until the sandbox has created the last
   of the 100,000 SMS (end to end: reading and checking the file, writing the documents, the
   jobs calls, OVH fetching the documents and creating the SMS).
2. **requests**: ``campaign send --via requests`` on the first ``--requests-rows`` rows of the
   same layout; jobs calls counted over ``--requests-s`` seconds after the first one; the
   100,000-row total is extrapolated (one jobs call per row: each row's text differs).

Meanwhile a one-time code (high lane, ``no_stop_clause``) is sent every ``CODE_EVERY_S``
seconds; its latency (request published to result written) is reported for each phase.

The goal (issue 17): bulk under 10 calls and under 5 minutes end to end; codes keep their latency.

    python benchmarks/bench_campaign_bulk.py [--rows 100000] [--requests-s 60] [--quick]
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import harness
from bench_campaign import MESSAGE, write_contacts
from harness import log

from contracts import SmsProducer

#: Seconds between two one-time codes sent during each phase.
CODE_EVERY_S = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Codes(threading.Thread):
    """Sends a one-time code every ``CODE_EVERY_S`` until stopped; latencies in seconds."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(daemon=True)
        self.producer = SmsProducer(redis_url)
        self.stop = threading.Event()
        self.latencies: list[float] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.time()
            request_id = self.producer.send(
                harness.receiver(900_000 + n), f"Your code is {n:06d}", priority="high", no_stop_clause=True
            )
            result = self.producer.wait(request_id, timeout=60)
            self.latencies.append(result.finished_at - started)
            self.stop.wait(CODE_EVERY_S)

    def finish(self) -> list[float]:
        self.stop.set()
        self.join(70)
        return self.latencies


def campaign(stack: harness.Stack, env: dict[str, str], contacts: Path, via: str, tag: str) -> dict[str, Any]:
    args = [harness.PYTHON, "-m", "worker.cli", "campaign", "send", str(contacts), "--message", MESSAGE]
    args += ["--tag", tag, "--via", via, "--no-wait", "--no-progress", "--json"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"campaign send --via {via} failed: {done.stderr.strip()}")
    return dict(json.loads(done.stdout))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the bulk campaign's file")
    parser.add_argument("--requests-rows", type=int, default=2_000, help="rows queued in requests mode")
    parser.add_argument("--requests-s", type=float, default=60.0, help="seconds requests mode is measured")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10,000 rows, 20 s of requests mode")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.requests_s = 10_000, 20.0
    token = secrets.token_urlsafe(24)
    port = free_port()
    with harness.Stack("campaign-bulk", latency_ms=50, rate_limit=1.0) as stack:
        inbound_url = f"http://127.0.0.1:{port}"
        env = stack.env(
            SMS_WORKER_RATE_LIMIT="1",
            SMS_WORKER_INBOUND_TOKEN=token,
            SMS_WORKER_INBOUND_PORT=str(port),
            SMS_WORKER_INBOUND_PUBLIC_URL=inbound_url,
        )
        inbound = harness.spawn(
            [harness.PYTHON, "-m", "worker.cli", "inbound"], env=env, log_path=stack.logdir / "inbound.log"
        )
        stack.workers.append(inbound)
        stack.start_ours(1, **{k: v for k, v in env.items() if k.startswith("SMS_WORKER_INBOUND")})
        control = stack.sandbox.control
        big = stack.logdir / "contacts.csv"
        write_contacts(big, args.rows)
        log(f"{args.rows:,} rows written ({big.stat().st_size / 2**20:.1f} MB)")

        # -- bulk --------------------------------------------------------------------------------
        codes = Codes(stack.redis_url)
        codes.start()
        before = control.counters()
        started = time.monotonic()
        summary = campaign(stack, env, big, "bulk", "bench-bulk")
        queued_s = time.monotonic() - started
        log(f"bulk: {summary['documents']} documents written in {queued_s:.1f} s; waiting for the SMS...")
        deadline = time.monotonic() + 1800
        while control.counters()["sms_sent"] - before["sms_sent"] < args.rows - summary["rejected"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the bulk campaign's SMS were not all created within 30 minutes")
            time.sleep(0.2)
        bulk_s = time.monotonic() - started
        after = control.counters()
        bulk_codes = codes.finish()
        bulk_jobs = after["bulk_jobs"] - before["bulk_jobs"]
        # every other OVH call meanwhile, the codes' jobs calls apart: the rows' tracking (tag
        # listings, SMS records read without callbacks), rates, balance, senders
        other_calls = after["requests"] - before["requests"] - bulk_jobs - len(bulk_codes)
        log(f"bulk: last SMS created {bulk_s:.1f} s after the command started")

        # -- requests ----------------------------------------------------------------------------
        small = stack.logdir / "contacts-requests.csv"
        write_contacts(small, args.requests_rows)
        codes = Codes(stack.redis_url)
        codes.start()
        campaign(stack, env, small, "requests", "bench-requests")
        first_call = time.monotonic() + 600
        jobs0 = control.counters()["jobs_calls"]
        while control.counters()["jobs_calls"] == jobs0 and time.monotonic() < first_call:
            time.sleep(0.1)
        jobs_start, measured_from = control.counters()["jobs_calls"], time.monotonic()
        time.sleep(args.requests_s)
        jobs_done = control.counters()["jobs_calls"] - jobs_start
        requests_codes = codes.finish()
        per_min = jobs_done / args.requests_s * 60
        measured_s = time.monotonic() - measured_from
        total_h = args.rows / (per_min / 60) / 3600 if per_min else float("inf")
        log(f"requests: {jobs_done} jobs calls in {measured_s:.0f} s")

    rows = [
        ["jobs calls", bulk_jobs, f"{args.rows:,} (one per row: each text differs)", "bulk < 10"],
        ["jobs calls per minute", "-", f"{per_min:.0f}", ""],
        ["other OVH calls meanwhile (tracking, no callbacks)", other_calls, "-", "bounded"],
        ["time to the last SMS created", f"{bulk_s:.0f} s", f"{total_h:.1f} h (extrapolated)", "bulk < 300 s"],
        ["documents (rows each)", f"{summary['documents']} (<= 50,000)", "-", ""],
        ["code latency p50 / max (s)", _lat(bulk_codes), _lat(requests_codes), "kept"],
    ]
    title = (
        f"Campaign of {args.rows:,} rows (cookbook layout, 3 variables) at 1 call/s (sandbox and worker): "
        f"bulk mode vs requests mode (requests mode measured {args.requests_s:.0f} s on {args.requests_rows:,} rows)"
    )
    print(f"{title}\n{harness.table(['', 'bulk', 'requests', 'goal'], rows)}\n{harness.machine()}")
    return 0 if bulk_jobs < 10 and bulk_s < 300 else 1


def _lat(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{harness.median(values):.2f} / {max(values):.2f} ({len(values)} codes)"


if __name__ == "__main__":
    sys.exit(main())
