"""Running ``sms-worker`` as a subprocess, as a person or a script would, and the cookbook's contacts file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: OVHcloud SMS cookbook, "Mail merge": the contacts.csv file's lines and the message, as written there.
COOKBOOK_CSV = """number ;lastname ;firstname ;address
0662000000 ;Durant ;Pierre ;xx rue montaigne Paris
0662000001 ;Dupont ;Jean ;xx rue montaigne Paris
"""
COOKBOOK_MESSAGE = (
    "Hello #firstname# #lastname#, your order will be delivered to the following address: #address#. Best regards."
)

FIRST_NAMES = ("Pierre", "Jean", "Marie", "Lucie", "Hugo", "Chloé", "Léa", "Louis", "Emma", "Jules")


def contact_line(n: int) -> str:
    """The ``n``-th contact (from 0) in the cookbook's layout: numbers 0662000000, 0662000001, ..."""
    return f"06{62000000 + n:08d} ;Name{n} ;{FIRST_NAMES[n % len(FIRST_NAMES)]} ;{n} rue montaigne Paris"


def merged(n: int) -> str:
    """The text the ``n``-th contact must receive."""
    first, last, address = {0: ("Pierre", "Durant", "xx"), 1: ("Jean", "Dupont", "xx")}.get(
        n, (FIRST_NAMES[n % len(FIRST_NAMES)], f"Name{n}", str(n))
    )
    return (
        f"Hello {first} {last}, your order will be delivered to the following address: "
        f"{address} rue montaigne Paris. Best regards."
    )


def e164(n: int) -> str:
    return f"+336{62000000 + n:08d}"


def write_contacts(path: Path, count: int, extra: str = "") -> Path:
    """The cookbook's header and first two rows, then more rows in its layout, up to ``count``."""
    lines = COOKBOOK_CSV.splitlines()[1:3] if count >= 2 else []
    lines += [contact_line(n) for n in range(len(lines), count)]
    path.write_text(COOKBOOK_CSV.splitlines()[0] + "\n" + "\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def sms_worker(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (and proof there is no traceback)."""
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]
