"""How long a worker's death holds up what it had claimed: SIGKILL to the receivers sent or reconciled.

Default settings (a 15 s lease, swept every 3 s; a 10 s reconciliation grace window), two
``sms-worker run`` processes against the sandbox (its own process, no latency). Two cases, each
repeated: the killed worker had

- **in flight**: its call carried out by OVH, whose answer it was still waiting for (the
  sandbox's ``timeout_after_accept``): another worker takes the attempt over, finds the SMS in
  OVH's records and settles it;
- **waiting to retry**: its call refused with 503 again and again, the worker in its backoff
  between two tries (OVH recovers at the kill): another worker takes the attempt over, stages it
  again and sends it.

The figure is the time from the SIGKILL to the request's result (the producer's ``wait``). The
goal of issue 8 is under 30 s with the defaults.

    python benchmarks/bench_takeover.py [--runs 3]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import time

import harness
from harness import log

from contracts import SmsProducer


def one_run(case: str, n: int) -> tuple[float, str]:
    with harness.Stack(f"takeover-{case}-{n}", latency_ms=0, rate_limit=0) as stack:
        control = stack.sandbox.control
        if case == "in flight":
            control.set_faults(hold_s=300)
            control.add_fault("timeout_after_accept", next=1)
            env = {"SMS_WORKER_OVH_READ_TIMEOUT_S": "300"}
        else:
            control.add_fault("503", probability=1.0)
            env = {"SMS_WORKER_RETRY_ATTEMPTS": "20", "SMS_WORKER_RETRY_MAX_WAIT_S": "300"}
        [first] = stack.start_ours(1, **env)
        producer = SmsProducer(stack.redis_url)
        request_id = producer.send(harness.receiver(n), f"Your code is {n:06d}", priority="high", no_stop_clause=True)
        deadline = time.monotonic() + 30
        while len(control.calls()) < (1 if case == "in flight" else 4) and time.monotonic() < deadline:
            time.sleep(0.01)
        stack.start_ours(1)  # the survivor, already running when the other dies
        first.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        control.clear_faults()
        result = producer.wait(request_id, timeout=120)
        seconds = time.monotonic() - killed
        sms = control.sent()
        assert len(sms) == 1 and result.status == "sent", (result, sms)
        assert case == "in flight" or len(control.calls()) >= 5, "the first worker was not in a backoff"
        return seconds, result.status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each case (default 3)")
    args = parser.parse_args()
    rows = []
    for case in ("in flight", "waiting to retry"):
        times = []
        for n in range(args.runs):
            seconds, status = one_run(case, n)
            log(f"{case}: run {n + 1}: {status} {seconds:.1f} s after the SIGKILL")
            times.append(seconds)
        rows.append((case, min(times), statistics.median(times), max(times)))
    print(f"\n{'the killed worker had':<20}{'min':>8}{'median':>8}{'max':>8}   (seconds from SIGKILL to the result)")
    for case, low, mid, high in rows:
        print(f"{case:<20}{low:>8.1f}{mid:>8.1f}{high:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
