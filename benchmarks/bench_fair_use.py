"""Benchmark 9: one-time codes at OVH's real fair use (1 call/s) while a campaign holds every slot.

The sandbox answers in 50 ms and allows 1 call/s per consumer key (a burst of ``--sandbox-burst``
calls: OVH's fair use is "about 60 calls a minute", a budget per minute rather than a fixed
spacing); the worker runs with ``SMS_WORKER_RATE_LIMIT=1`` (the default) and default settings
otherwise. A campaign of ``--receivers`` (requests of 1,000 receivers, lane ``low``, 500 per
call) is queued at once; three seconds later one-time codes (lane ``high``, each text
different) start, on average one every ``--code-every`` seconds, each sent by its own thread with
``SmsProducer.send`` and timed until ``SmsProducer.wait`` returns. Only codes sent while the
campaign was still running count. The gaps between codes are drawn uniformly from half to one and a
half times ``--code-every`` (seeded): a fixed period would keep every code at the same one or two
phases of the limiter's one-second slots.

Every ``--ambiguous-every``-th code's call is carried out by OVH but its answer never comes
back (the sandbox's ``timeout_after_accept``, for that code's number only; the worker's read
timeout is ``--read-timeout`` seconds): the worker must reconcile it from OVH's records, with
rate-limited lookups, while the campaign still wants every slot. The naive worker gets no such
fault (it has nothing to reconcile with).

What it prints: codes' send -> result (p50, p99, max), the ambiguous codes' send -> result, the
campaign's calls per second while codes run, and the campaign slots each code cost: 1 when a code
takes the one slot the campaign would have had (the rate is shared), plus the reconciliation
lookups of lost answers (two per lost answer here: a listing and a read), which take slots too
but are not jobs calls (hence jobs calls under 100% of the rate).

Columns: the naive worker, ``--base`` (another checkout's worker, e.g. the commit before a change,
run from its own .venv), and this tree's worker.

    python benchmarks/bench_fair_use.py [--base ../wt-base] [--receivers 75000] [--codes 100] [--quick]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import harness
from harness import log

from contracts import SmsProducer
from contracts.models import Priority, SendRequest
from contracts.producer import ResultTimeout

TEXT = "Autumn collection: 3 days of free delivery at shop.example"
RATE_PER_S = 1.0
BAR_S = 0.300  # issue 19: p99 of a code at 1 call/s during a saturating campaign, seconds


def campaign(receivers: int, prefix: str) -> Any:
    for n, start in enumerate(range(0, receivers, 1000)):
        numbers = [harness.receiver(i) for i in range(start, min(start + 1000, receivers))]
        yield SendRequest(request_id=f"{prefix}-campaign-{n}", message=TEXT, receivers=numbers, priority=Priority.low)


def run(stack: harness.Stack, prefix: str, args: argparse.Namespace, *, ours: bool) -> dict[str, Any]:
    """One column; ``ours``: this project's worker (some answers lost, the whole campaign waited for)."""
    faults = ours
    client = stack.redis()
    producer = SmsProducer(stack.redis_url)
    stack.sandbox.control.set_faults(hold_s=args.read_timeout + 5)
    queued = harness.publish(stack.redis_url, campaign(args.receivers, prefix), chunk=20)
    log(f"{prefix}: campaign of {args.receivers:,} receivers queued ({len(queued.ids)} requests)")
    time.sleep(3.0)

    timings: list[tuple[float, float, bool]] = []  # (sent at, seconds to result or inf, ambiguous)
    stages: list[tuple[float, float, float]] = []  # plain codes: (sent at, send -> accepted, accepted -> result)
    lock = threading.Lock()

    def one_code(n: int, ambiguous: bool) -> None:
        number = harness.receiver(5_000_000 + n)
        if ambiguous:
            stack.sandbox.control.add_fault("timeout_after_accept", next=1, receiver=number)
        sent_at = time.time()
        started = time.perf_counter()
        request_id = producer.send(
            number,
            f"Your code is {(n * 7919) % 1_000_000:06d}",
            request_id=f"{prefix}-code-{n}",
            priority="high",
            no_stop_clause=True,
        )
        try:
            result = producer.wait(request_id, timeout=args.code_timeout)
            elapsed = time.perf_counter() - started
        except ResultTimeout:
            elapsed = math.inf
        with lock:
            timings.append((sent_at, elapsed, ambiguous))
            if elapsed < math.inf and not ambiguous and result.accepted_at is not None:
                stages.append((sent_at, result.accepted_at - sent_at, result.finished_at - result.accepted_at))

    threads = []
    gaps = random.Random(19)
    next_at = time.monotonic()
    for n in range(args.codes):
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at += args.code_every * gaps.uniform(0.5, 1.5)
        if n % 5 == 0 and harness.count_results(client, queued.ids) == len(queued.ids):
            log(f"{prefix}: the campaign is over; stopping codes after {n}")
            break
        ambiguous = faults and args.ambiguous_every > 0 and n % args.ambiguous_every == args.ambiguous_every - 1
        thread = threading.Thread(target=one_code, args=(n, ambiguous), daemon=True)
        thread.start()
        threads.append(thread)
        if n % 20 == 19:
            log(f"{prefix}: {n + 1} codes sent")
    for thread in threads:
        thread.join(args.code_timeout + 10)
    # the naive worker's 429-refused requests wait out dramatiq's growing backoff: no waiting for all
    campaign_wait_s = args.code_timeout if ours else 60.0
    done = harness.wait_results(client, queued.ids, timeout_s=campaign_wait_s, label=f"{prefix} campaign")
    producer.close()
    for sent_at, accept_s, dispatch_s in sorted(stages, key=lambda s: -(s[1] + s[2]))[:3]:
        log(f"{prefix}: a slow code, sent at {sent_at:.3f}: {accept_s:.3f} s to accepted, {dispatch_s:.3f} s to result")

    records = stack.sandbox.control.calls()
    campaign_calls = sorted(r["time"] for r in records if r["receivers"] > 1 and r["status"] == 200)
    campaign_end = campaign_calls[-1] if done == len(queued.ids) and campaign_calls else math.inf
    first_code = min((sent for sent, _, _ in timings), default=math.inf)
    last_code = max((sent for sent, _, _ in timings if sent < campaign_end), default=first_code)
    window_s = max(last_code - first_code, 1e-9)
    under_load = [(elapsed, ambiguous) for sent, elapsed, ambiguous in timings if sent < campaign_end]
    plain = [elapsed for elapsed, ambiguous in under_load if not ambiguous]
    lost = [elapsed for elapsed, ambiguous in under_load if ambiguous]
    during = [t for t in campaign_calls if first_code <= t < last_code]
    codes_in_window = sum(1 for sent, _, _ in timings if first_code <= sent < last_code)
    code_calls = [r["ended"] - r["time"] for r in records if r["receivers"] == 1 and r.get("ended") is not None]
    return {
        "codes": len(plain),
        "ambiguous": len(lost),
        "p50": harness.percentile(plain, 50),
        "p99": harness.percentile(plain, 99),
        "max": max(plain, default=math.nan),
        "accept_p99": harness.percentile([a for _, a, _ in stages], 99),
        "dispatch_p99": harness.percentile([d for _, _, d in stages], 99),
        "amb_p50": harness.percentile(lost, 50),
        "amb_max": max(lost, default=math.nan),
        "ovh_p99": harness.percentile(code_calls, 99),
        "campaign_during": len(during) / window_s,
        "slots_per_code": (window_s * RATE_PER_S - len(during)) / codes_in_window if codes_in_window else math.nan,
        "jobs_share": sum(1 for r in records if first_code <= r["time"] < last_code and r["status"] == 200)
        / window_s
        / RATE_PER_S,
        "refused": sum(1 for r in records if r["status"] == 429),
        "campaign_done": f"{done}/{len(queued.ids)}",
        "campaign_s": (campaign_end if campaign_end < math.inf else time.time()) - queued.first,
        "timeout": args.code_timeout,
        "faults": faults,
    }


def _seconds(value: float, timeout: float) -> str:
    if value != value:  # NaN: nothing measured
        return "-"
    return f"> {timeout:.0f}" if value == math.inf else f"{value:.3f}"


def report(columns: list[dict[str, Any]], args: argparse.Namespace) -> str:
    def row(name: str, key: Any, bar: str = "") -> list[Any]:
        return [name, *[key(c) for c in columns], bar]

    def ambiguous(key: str) -> Any:
        return lambda c: _seconds(c[key], c["timeout"]) if c["faults"] else "-"

    rows = [
        row("codes during the campaign", lambda c: c["codes"]),
        row("code send -> result p50 s", lambda c: _seconds(c["p50"], c["timeout"])),
        row("code send -> result p99 s", lambda c: _seconds(c["p99"], c["timeout"]), f"<= {BAR_S:.3f}"),
        row("code send -> result max s", lambda c: _seconds(c["max"], c["timeout"])),
        row("  p99: send -> accepted s", lambda c: _seconds(c["accept_p99"], c["timeout"])),
        row("  p99: accepted -> result s", lambda c: _seconds(c["dispatch_p99"], c["timeout"])),
        row("  code's call in the sandbox p99 s", lambda c: _seconds(c["ovh_p99"], c["timeout"])),
        row("ambiguous codes (answer lost)", lambda c: c["ambiguous"] if c["faults"] else "-"),
        row("  send -> result p50 s", ambiguous("amb_p50")),
        row("  send -> result max s", ambiguous("amb_max"), "seconds"),
        row("campaign calls/s while codes run", lambda c: c["campaign_during"]),
        row("campaign slots lost per code", lambda c: c["slots_per_code"], "1 + lookups"),
        row("jobs calls while codes run, of the rate", lambda c: f"{c['jobs_share']:.0%}"),
        row("API calls refused (429)", lambda c: c["refused"]),
        row("campaign requests done", lambda c: c["campaign_done"]),
        row("campaign seconds", lambda c: c["campaign_s"]),
    ]
    lost = f"every {args.ambiguous_every}th one's answer lost" if args.ambiguous_every else "no answer lost"
    title = (
        f"Codes at OVH's fair use: campaign of {args.receivers:,} receivers (lane low) + a code every "
        f"{args.code_every:g} s (lane high), {lost}; sandbox "
        f"{harness.LATENCY_MS:.0f} ms, {RATE_PER_S:g} call/s (burst {args.sandbox_burst:g}); "
        f"worker read timeout {args.read_timeout:g} s"
    )
    body = harness.table(["", *[c["label"] for c in columns], "bar"], rows)
    return f"{title}\n{body}\n{harness.machine()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", type=int, default=75_000, help="receivers of the campaign")
    parser.add_argument("--codes", type=int, default=100, help="most codes sent")
    parser.add_argument("--code-every", type=float, default=2.5, help="seconds between two codes")
    parser.add_argument("--ambiguous-every", type=int, default=10, help="every Nth code's answer is lost (0: none)")
    parser.add_argument("--read-timeout", type=float, default=2.0, help="the worker's OVH read timeout, seconds")
    parser.add_argument("--sandbox-burst", type=float, default=3.0, help="calls the sandbox lets through at once")
    parser.add_argument("--code-timeout", type=float, default=900.0, help="seconds a code waits for its result")
    parser.add_argument("--base", type=harness.base_tree, help="also run the worker of this checkout (its .venv)")
    parser.add_argument("--skip-naive", action="store_true", help="no naive worker column")
    parser.add_argument("--skip-ours", action="store_true", help="no column for this tree's worker")
    parser.add_argument("--quick", action="store_true", help="smoke run: 15,000 receivers, 20 codes")
    args = parser.parse_args(argv)
    if args.quick:
        args.receivers, args.codes, args.code_timeout = 15_000, 20, 300.0
    if not (1_000 <= args.receivers <= 1_000_000 and 1 <= args.codes <= 1_000 and 0.5 <= args.code_every <= 60):
        parser.error("receivers 1,000..1,000,000, codes 1..1,000, code-every 0.5..60")

    sides: list[tuple[str, str, Path | None]] = []
    sides += [] if args.skip_naive else [("naive", "naive, 1 proc", None)]
    sides += [("base", f"{harness.commit_of(args.base)}, 1 proc", args.base)] if args.base else []
    sides += [] if args.skip_ours else [("ours", f"{harness.commit_of(harness.REPO)}, 1 proc", None)]
    env = {"SMS_WORKER_RATE_LIMIT": repr(RATE_PER_S), "SMS_WORKER_OVH_READ_TIMEOUT_S": repr(args.read_timeout)}
    columns = []
    for side, label, tree in sides:
        stack_args = {"latency_ms": harness.LATENCY_MS, "rate_limit": RATE_PER_S}
        with harness.Stack(f"fairuse-{side}", rate_limit_burst=args.sandbox_burst, **stack_args) as stack:
            if side == "naive":
                stack.start_naive(1, threads=8)
            else:
                stack.start_ours(1, tree=tree, **env)
            columns.append({"label": label, **run(stack, side, args, ours=side != "naive")})
    print(report(columns, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
