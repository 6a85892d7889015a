"""The README's set-up commands are the ones CI and users run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("python3 -m venv .venv")]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = _commands((ROOT / "README.md").read_text())
    ci = _commands((ROOT / ".ci" / "run").read_text())
    assert len(readme) == 2, "the README starts with two set-up commands: the demo and the tests"
    assert ci == [readme[1]]
    assert re.search(r"\bpytest( -[-\w ]+)?$", readme[1]), "the test command runs the whole suite"
    assert readme[0].endswith("sms-worker demo")


def test_the_demo_sends_what_the_readme_says() -> None:
    # When the demo runs as the README's first command runs it
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo"], capture_output=True, text=True, timeout=240, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Then the number of SMS the README announces is the number the sandbox accepted
    accepted = re.search(r"^sandbox: \d+ jobs calls, (\d+) SMS accepted", done.stdout, re.MULTILINE)
    assert accepted is not None, done.stdout
    readme = (ROOT / "README.md").read_text()
    announced = re.search(r"then ([\d,]+) SMS sent through them", readme)
    assert announced is not None
    assert int(announced.group(1).replace(",", "")) == int(accepted.group(1))
    assert f"{accepted.group(1)} SMS accepted" in readme, "the README's sample output"
