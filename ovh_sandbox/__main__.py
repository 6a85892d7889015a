"""``python -m ovh_sandbox``: the same as ``sms-worker sandbox``."""

from __future__ import annotations

from ovh_sandbox.cli import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m ovh_sandbox"))
