"""``sms-worker``: run the worker, send one SMS, run the demo, or serve the OVH sandbox.

One module per command (``run``, ``send``, ``quotas``, ...), each with ``add_arguments`` and
``run``; this module builds the parser and turns configuration errors into one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType

from ..errors import ConfigurationError
from . import callbacks, inbound, quotas, run, send


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo()


def _sandbox(args: argparse.Namespace) -> int:
    from ..sandbox import cli as sandbox_cli

    return sandbox_cli.run(args)


def _add(commands: argparse._SubParsersAction, name: str, module: ModuleType, help: str) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(name, help=help)
    module.add_arguments(parser)
    parser.set_defaults(func=module.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sms-worker", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    _add(commands, "run", run, "run a worker process (needs REDIS_URL and OVH credentials)")
    _add(commands, "send", send, "queue one SMS (needs REDIS_URL)")
    _add(commands, "quotas", quotas, "show each user's quota, reserved, spent and left (needs REDIS_URL)")
    _add(commands, "inbound", inbound, "serve the callbacks OVH makes: delivery reports, replies, STOP")
    _add(commands, "callbacks", callbacks, "point OVH's callbacks at sms-worker inbound (callbacks setup --url)")
    demo = commands.add_parser("demo", help="run everything locally (private Redis, sandbox, worker) and send")
    demo.set_defaults(func=_demo)
    sandbox = commands.add_parser("sandbox", help="serve the OVH SMS API sandbox")
    from ..sandbox import cli as sandbox_cli

    sandbox_cli.add_arguments(sandbox)
    sandbox.set_defaults(func=_sandbox)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except ConfigurationError as exc:
        print(f"sms-worker: {exc}", file=sys.stderr)
        return 2
