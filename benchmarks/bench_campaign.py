"""Benchmark 6: ``sms-worker campaign send`` queueing a 100,000-row contacts file, in bounded memory.

Writes a contacts file in the cookbook's layout (``number ;lastname ;firstname ;address``, every
row a distinct French mobile), then runs ``python -m worker.cli campaign send`` on it as a
subprocess against a private Redis and the sandbox (``harness.Stack``) with no worker consuming:
queueing only (``--no-wait``). Measured: the command's peak RSS (``ru_maxrss`` of the child,
from ``os.wait4``: the kernel's high-water mark, nothing sampled), its wall time and rows queued
per second, and the rows Redis holds afterwards (the queue's packs). The same file is then sent
again, to time a resume that finds every row already queued.

The bar: RSS under 100 MB at 100,000 rows.

    python benchmarks/bench_campaign.py [--rows 100000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness
from harness import log

from contracts.wire import lane_queue, queue_key

#: The cookbook's mail-merge message.
MESSAGE = (
    "Hello #firstname# #lastname#, your order will be delivered to the following address: #address#. Best regards."
)
FIRST_NAMES = ("Pierre", "Jean", "Marie", "Lucie", "Hugo", "Chloe", "Lea", "Louis", "Emma", "Jules")


def write_contacts(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as file:
        file.write("number ;lastname ;firstname ;address\n")
        for n in range(rows):
            number = harness.receiver(n).replace("+33", "0")
            file.write(f"{number} ;Name{n} ;{FIRST_NAMES[n % 10]} ;{n} rue montaigne Paris\n")


def send(stack: harness.Stack, contacts: Path, label: str) -> dict[str, Any]:
    """Run the command once; its summary, wall time and peak RSS."""
    out = stack.logdir / f"{label}.json"
    args = [harness.PYTHON, "-m", "worker.cli", "campaign", "send", str(contacts), "--message", MESSAGE]
    args += ["--tag", "bench", "--no-wait", "--no-progress", "--json"]
    started = time.monotonic()
    with out.open("w") as stdout, (stack.logdir / f"{label}.log").open("w") as stderr:
        process = subprocess.Popen(args, env=stack.env(), stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"campaign send exited {process.returncode}: see {stack.logdir / (label + '.log')}")
    return {"summary": json.loads(out.read_text()), "seconds": seconds, "rss_mb": usage.ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the contacts file")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10,000 rows")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = 10_000
    if not 1_000 <= args.rows <= 2_000_000:
        parser.error("rows 1,000..2,000,000")
    with harness.Stack("campaign", latency_ms=0, rate_limit=0) as stack:
        contacts = stack.logdir / "contacts.csv"
        write_contacts(contacts, args.rows)
        log(f"{args.rows:,} rows written ({contacts.stat().st_size / 2**20:.1f} MB), queueing...")
        first = send(stack, contacts, "first")
        log(f"queued in {first['seconds']:.1f} s; sending the same file again (a resume)...")
        again = send(stack, contacts, "again")
        client = stack.redis()
        packs = int(client.llen(queue_key(lane_queue("low"))))
        redis_mb = int(client.info("memory")["used_memory"]) / 2**20
    s, r = first["summary"], again["summary"]
    rows = [
        ["rows queued", s["queued"], r["queued"], f"{args.rows:,}, then 0"],
        ["rows already queued", s["earlier"], r["earlier"], ""],
        ["seconds (wall, process start to exit)", first["seconds"], again["seconds"], ""],
        ["rows/s", args.rows / first["seconds"], args.rows / again["seconds"], ""],
        ["peak RSS MB (ru_maxrss)", first["rss_mb"], again["rss_mb"], "< 100"],
    ]
    title = (
        f"Campaign send: {args.rows:,}-row contacts file (cookbook layout, mail merge of 3 variables), "
        f"queueing only; {packs:,} queue messages of up to 100 requests, Redis {redis_mb:.0f} MB after"
    )
    print(f"{title}\n{harness.table(['', 'first run', 'run again', 'bar'], rows)}\n{harness.machine()}")
    return 0 if first["rss_mb"] < 100 and s["queued"] == args.rows and r["queued"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
