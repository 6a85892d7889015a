"""``python -m worker.sandbox``: the same as ``sms-worker sandbox``."""

from __future__ import annotations

import argparse

from .cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.sandbox", description="Serve the OVH SMS API sandbox.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
