"""What an idle worker costs: CPU of one ``sms-worker run`` process with nothing to do.

One worker process on all four lanes, with the defaults (no metrics port), against a private
Redis and the sandbox; after it started and settled for ``--warmup`` seconds, its CPU time
(utime + stime from ``/proc``) is read over ``--seconds``, with Redis' own CPU beside it
(``INFO cpu``: what the worker's waits and polls cost the server). Issue 12's bar: at most 1% of
a core.

    python benchmarks/bench_idle.py [--seconds 60] [--warmup 10]
"""

from __future__ import annotations

import argparse
import time

import harness
from harness import log


def redis_cpu_s(client: object) -> float:
    info = client.info("cpu")  # type: ignore[attr-defined]
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured idle time")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds after start before measuring")
    args = parser.parse_args()
    with harness.Stack("idle", latency_ms=0, rate_limit=0) as stack:
        stack.start_ours(1)
        client = stack.redis()
        log(f"idle worker started; measuring after {args.warmup:g} s, for {args.seconds:g} s")
        time.sleep(args.warmup)
        cpu, server, started = stack.cpu_seconds(), redis_cpu_s(client), time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        worker = (stack.cpu_seconds() - cpu) / elapsed * 100
        redis_share = (redis_cpu_s(client) - server) / elapsed * 100
        calls = len(stack.sandbox.control.calls())
    print(f"\nidle worker, {elapsed:.0f} s: {worker:.2f}% of a core (bar: 1%); Redis for it: {redis_share:.2f}%;")
    print(f"jobs calls made meanwhile: {calls}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
