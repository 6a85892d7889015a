"""Start-up cost of ``sms-worker``: wall time of ``--help`` and ``run --help`` (median of N runs,
milliseconds), and the modules loaded (and how many of the sandbox) by ``import worker.cli``,
``sms-worker --help`` and the run path up to building the app (``python -X importtime``).

Usage: ``python benchmarks/startup_imports.py [--python VENV_PYTHON] [--runs N]``; VENV_PYTHON is
another checkout's interpreter (its ``.venv/bin/python``) to measure that checkout instead, e.g.
the commit before the package re-cut (issue 15): fa31d05.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall_ms(python: str, args: list[str], runs: int, cwd: Path) -> float:
    """Median wall time of ``python args`` (milliseconds)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([python, *args], capture_output=True, check=True, cwd=cwd)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def modules(python: str, args: list[str], cwd: Path) -> tuple[int, float, int]:
    """(modules imported, their self times summed in ms, how many of them are the sandbox's)."""
    out = subprocess.run([python, "-X", "importtime", *args], capture_output=True, text=True, cwd=cwd).stderr
    rows = [line for line in out.splitlines() if line.startswith("import time:") and "|" in line and "self" not in line]
    self_us = sum(int(line.split("|")[0].split(":")[1]) for line in rows)
    sandbox = sum(1 for line in rows if "sandbox" in line.rsplit("|", 1)[1])
    return len(rows), self_us / 1000, sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the checkout to measure")
    parser.add_argument("--runs", type=int, default=15, help="runs per wall-time figure (the median is printed)")
    options = parser.parse_args()
    # the checkout whose venv this is: ``-m worker.cli`` resolves from there
    python = options.python
    cwd = Path(python).absolute().parent.parent.parent if options.python != sys.executable else Path.cwd()
    for label, args in (("sms-worker --help", ["-m", "worker.cli", "--help"]),
                        ("sms-worker run --help", ["-m", "worker.cli", "run", "--help"])):  # fmt: skip
        print(f"{label}: {wall_ms(python, args, options.runs, cwd):.0f} ms (median of {options.runs})")
    for label, args in (
        ("import worker.cli", ["-c", "import worker.cli"]),
        ("sms-worker --help", ["-m", "worker.cli", "--help"]),
        ("sms-worker run, up to building the app", ["-c", "import worker.cli, worker.app; worker.cli.build_parser()"]),
    ):
        count, self_ms, sandbox = modules(python, args, cwd)
        print(f"{label}: {count} modules, {self_ms:.0f} ms of self time summed, {sandbox} of the sandbox")


if __name__ == "__main__":
    main()
