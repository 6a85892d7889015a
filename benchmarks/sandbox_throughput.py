"""How many ``POST /sms/{sn}/jobs`` calls a second the sandbox serves, with no injected latency.

The sandbox runs in its own process (``python -m ovh_sandbox``), so client and server do not
share a GIL; a few threads each drive their own real python-ovh client (keep-alive session,
signed requests) for a fixed time. Run from the repository root:

    python benchmarks/sandbox_throughput.py [--threads 4] [--seconds 5] [--receivers 1]

Prints the calls/s, SMS/s and latency percentiles; the run is bounded by ``--seconds`` plus a
few seconds of start-up.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time

from worker.ovhcloud.client import make_client

MESSAGE = "Your code is 123456"


def start_sandbox() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ovh_sandbox", "--port", "0", "--credits", "1e15"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 20
    for line in process.stdout:
        found = re.match(r"export OVH_ENDPOINT=(\S+)", line)
        if found:
            return process, found.group(1)
        if time.monotonic() > deadline:
            break
    process.kill()
    raise SystemExit("the sandbox did not start")


def drive(base_url: str, receivers: list[str], stop_at: float, latencies: list[float], errors: list[str]) -> None:
    client = make_client(
        base_url,
        application_key="sandbox-application-key",
        application_secret="sandbox-application-secret",
        consumer_key="sandbox-consumer-key",
        timeout=(5.0, 10.0),
    )
    client.get("/sms")  # reads /auth/time and opens the keep-alive connection
    path = "/sms/sms-sandbox-1/jobs"
    while True:
        started = time.perf_counter()
        if started >= stop_at:
            return
        try:
            client.post(path, message=MESSAGE, receivers=receivers, sender="SANDBOX", noStopClause=True)
        except Exception as error:  # counted, not fatal: the figure is of successful calls
            errors.append(type(error).__name__)
            continue
        latencies.append(time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=4, help="client threads, one python-ovh client each")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured duration")
    parser.add_argument("--receivers", type=int, default=1, help="receivers per jobs call")
    args = parser.parse_args(argv)
    if not (1 <= args.threads <= 64 and 0 < args.seconds <= 120 and 1 <= args.receivers <= 500):
        parser.error("threads 1-64, seconds 0-120, receivers 1-500")

    receivers = [f"+3361{i:07d}" for i in range(args.receivers)]
    process, base_url = start_sandbox()
    try:
        latencies: list[list[float]] = [[] for _ in range(args.threads)]
        errors: list[str] = []
        stop_at = time.perf_counter() + 1.0 + args.seconds  # 1 s for the clients to warm up
        threads = [
            threading.Thread(target=drive, args=(base_url, receivers, stop_at, latencies[i], errors))
            for i in range(args.threads)
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        counted_from = time.perf_counter()
        before = sum(len(lat) for lat in latencies)
        for thread in threads:
            thread.join(timeout=args.seconds + 30)
        elapsed = time.perf_counter() - counted_from
        calls = sum(len(lat) for lat in latencies) - before
        everything = sorted(x for lat in latencies for x in lat)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()

    rate = calls / elapsed
    print(
        f"sandbox jobs calls/s: {rate:.0f}  ({args.threads} threads, {args.receivers} receiver(s) per call, "
        f"{elapsed:.1f} s, {calls} calls, {len(errors)} errors)"
    )
    print(f"SMS/s: {rate * args.receivers:.0f}")
    if everything:
        p50 = statistics.median(everything) * 1000
        p99 = everything[int(len(everything) * 0.99) - 1] * 1000
        print(f"latency ms: p50 {p50:.2f}, p99 {p99:.2f}")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    return 0 if calls and not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
