"""Where the worker's CPU goes in the broadcast: py-spy attached to one ``sms-worker run`` process.

The load of ``bench_broadcast.py`` (single-receiver requests, same text) against one worker on a
fresh stack, with ``py-spy record --gil --threads`` sampling it (only the samples where a thread
holds the GIL: Python's own CPU, not its waits on Redis or OVH). Prints the worker's CPU per
request (``/proc``, with py-spy's own cost included: a few percent), each thread's share of the
samples, and the functions with the most samples, inclusive (a function and what it calls) and
self. py-spy is not a dependency of the project: ``pip install py-spy`` (it needs ptrace, so
root or ``CAP_SYS_PTRACE``).

    python benchmarks/profile_broadcast.py [--requests 30000] [--base DIR] [--top 40] [--raw FILE]
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_broadcast
import harness
from harness import log

FRAME = re.compile(r"^(?P<name>.+?) \((?P<file>[^()]*?):\d+\)$")


def record(n: int, raw: Path, tree: Path | None) -> str:
    """Run the broadcast with py-spy writing folded stacks to ``raw``; the run's figures."""
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with harness.Stack("profile") as stack:
        [worker] = stack.start_ours(1, tree=tree)
        client = stack.redis()
        args = [spy_bin, "record", "-p", str(worker.pid), "--gil", "--threads", "--nonblocking"]
        spy = subprocess.Popen([*args, "--format", "raw", "-r", "200", "-o", str(raw)], stdout=subprocess.DEVNULL)
        time.sleep(1.0)
        cpu = stack.cpu_seconds()
        queued = harness.publish(stack.redis_url, bench_broadcast.requests(n, "profile"))
        done = harness.wait_results(client, queued.ids, timeout_s=max(120.0, n / 200), label="profile")
        cpu = stack.cpu_seconds() - cpu
        end = max(r["finished_at"] for r in harness.read_results(client, queued.ids).values())
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    return f"{done:,} requests, {done / (end - queued.first):,.0f} req/s, worker CPU {cpu / done * 1e6:.0f} us/request"


def _short(frame: str) -> str:
    found = FRAME.match(frame)
    if not found:
        return frame
    return f"{found['name']} ({'/'.join(Path(found['file']).parts[-2:])})"


def summary(raw: Path, top: int) -> str:
    """Threads' shares, then functions by inclusive and by self samples."""
    threads: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        threads[re.sub(r"^thread \(\d+\): |-\d+$", "", thread)] += count
        total += count
        for name in {_short(frame) for frame in frames}:
            inclusive[name] += count
        if frames:
            own[_short(frames[-1])] += count
    lines = [f"{total:,} samples holding the GIL"]
    lines += [f"{v / total:6.1%}  thread {k}" for k, v in threads.most_common(8)]
    lines += ["", "inclusive:"] + [f"{v / total:6.1%}  {k}" for k, v in inclusive.most_common(top)]
    lines += ["", "self:"] + [f"{v / total:6.1%}  {k}" for k, v in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30_000, help="single-receiver requests")
    parser.add_argument("--base", type=harness.base_tree, help="profile the worker of this checkout instead")
    parser.add_argument("--top", type=int, default=40, help="functions listed")
    parser.add_argument("--raw", type=Path, help="keep py-spy's folded stacks in this file")
    args = parser.parse_args(argv)
    raw = args.raw or Path(tempfile.mkdtemp(prefix="sms-profile-")) / "stacks.txt"
    figures = record(args.requests, raw, args.base)
    log(f"folded stacks in {raw}")
    print(f"{figures}\n{harness.machine()}\n\n{summary(raw, args.top)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
