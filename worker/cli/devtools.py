"""``sms-worker dev``, ``demo`` and ``sandbox``: developer tools kept out of the production path.

They live in the ``devstack`` and ``ovh_sandbox`` packages, which ``sms-worker run`` and the
image never load: this module imports them only when one of these commands runs (the one
import of those packages the layering contract allows, in pyproject.toml), and hands the
command's arguments over unparsed (each tool has its own parser and ``--help``).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from worker.errors import ConfigurationError


@contextmanager
def _installed(package: str) -> Iterator[None]:
    """Turns the tool's absence (an image, a wheel without it) into one clear line."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name != package:
            raise
        raise ConfigurationError(
            f"{package} is not installed here (the production image leaves the developer tools out); "
            "install ovh-sms-worker from its source tree: pip install -e ."
        ) from None


def _demo(args: argparse.Namespace) -> int:
    with _installed("devstack"):
        from devstack.demo import run_demo
    return run_demo()


def _dev(args: argparse.Namespace) -> int:
    with _installed("devstack"):
        from devstack.dev import run_dev
    return run_dev(args)


def _sandbox(args: argparse.Namespace) -> int:
    with _installed("ovh_sandbox"):
        from ovh_sandbox.cli import main
    return main(args.tool_args)


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dev = commands.add_parser(
        "dev", help="a local stack until Ctrl-C: private Redis, sandbox, worker, inbound service, callbacks wired"
    )
    dev.add_argument("--sandbox-port", type=int, default=0, help="port of the OVH sandbox (default: a free one)")
    dev.add_argument("--inbound-port", type=int, default=0, help="port of the inbound service (default: a free one)")
    dev.add_argument("--redis-port", type=int, default=0, help="port of the private Redis (default: a free one)")
    dev.add_argument("--seed", type=int, default=0, help="seed of the sandbox's delivery outcomes")
    dev.set_defaults(func=_dev)
    demo = commands.add_parser("demo", help="run everything locally (private Redis, sandbox, worker) and send")
    demo.set_defaults(func=_demo)
    # add_help=False: --help goes to the sandbox's own parser, with every option it has.
    sandbox = commands.add_parser("sandbox", help="serve the OVH SMS API sandbox (--help: its options)", add_help=False)
    sandbox.set_defaults(func=_sandbox, passes_on=True)  # main() hands it the arguments it does not know
