"""Lint, format and types are part of the suite, so CI enforces them as STYLE.md asks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["worker", "contracts", "ovh_sandbox", "devstack", "tests", "benchmarks"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [("ruff", "check"), ("ruff", "format", "--check")], ids=" ".join)
def test_ruff(command: tuple[str, ...]) -> None:
    done = run(*command, *SOURCES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy() -> None:
    done = run("mypy", "worker", "contracts", "ovh_sandbox", "devstack", "--ignore-missing-imports")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_on_the_contract_and_the_attempt_lifecycle() -> None:
    # The wire contract and the attempt lifecycle (and what they import) type-check under
    # --strict: no untyped documents crossing into Lua or out of OVH on the send path.
    done = run("mypy", "--strict", "contracts", "worker/attempts")
    assert done.returncode == 0, done.stdout + done.stderr
