"""``sms-worker``: run the worker, send one SMS, run the demo, or serve the OVH sandbox.

One module per command (``run``, ``send``, ``quotas``, ``health``, ...), each with
``add_arguments`` and ``run``; this module builds the parser, configures logging once, and
turns what a person can meet into one line: configuration errors exit 2, a Redis or OVH that
does not answer exits 1. ``-v`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from types import ModuleType
from typing import NoReturn

from worker.cli import (
    account,
    callbacks,
    campaign,
    credits,
    devtools,
    dlq,
    health,
    inbound,
    quotas,
    rates,
    run,
    send,
    senders,
    usage,
    users,
)
from worker.errors import ConfigurationError


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one line (the usage is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _add(commands: argparse._SubParsersAction, name: str, module: ModuleType, help: str) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(name, help=help)
    module.add_arguments(parser)
    parser.set_defaults(func=module.run)


def _version() -> str:
    try:
        return metadata.version("ovh-sms-worker")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sms-worker", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add(commands, "run", run, "run a worker process (needs REDIS_URL and OVH credentials)")
    _add(commands, "send", send, "queue one SMS (needs REDIS_URL)")
    _add(commands, "quotas", quotas, "show each user's quota, reserved, spent and left (needs REDIS_URL)")
    _add(commands, "health", health, "ask the worker's /healthz or /readyz (an exec probe); exit 0 when healthy")
    _add(commands, "inbound", inbound, "serve the callbacks OVH makes: delivery reports, replies, STOP")
    _add(commands, "callbacks", callbacks, "point OVH's callbacks at sms-worker inbound (callbacks setup --url)")
    _add(commands, "campaign", campaign, "send a mail-merge contacts file; report on a campaign's tag")
    _add(commands, "users", users, "list, show, create, update or delete the account's OVH SMS API users")
    _add(commands, "account", account, "credits, senders and the worker's quotas of the SMS account")
    _add(commands, "senders", senders, "list, show, declare or delete the account's senders (validated by OVH)")
    _add(commands, "credits", credits, "credits left; price, order, automatic top-up, transfer of credits")
    _add(commands, "usage", usage, "SMS and credits per user, tag or sender over a period (re-invoicing)")
    _add(commands, "rates", rates, "credits and price of one SMS per destination country")
    _add(commands, "dlq", dlq, "list, show, replay or drop the lanes' dead letters")
    devtools.add_commands(commands)
    return parser


def _configure_logging(verbose: bool) -> None:
    """From SMS_WORKER_LOG_FORMAT and SMS_WORKER_LOG_LEVEL; defaults when the settings are
    invalid (the command reports that itself)."""
    from worker.cli.common import load_settings
    from worker.ops.logs import configure_logging

    try:
        settings = load_settings()
        level, fmt = settings.log_level, settings.log_format
    except ConfigurationError:
        level, fmt = "INFO", "text"
    configure_logging(level="DEBUG" if verbose else level, fmt=fmt)


def outage(exc: BaseException) -> str | None:
    """One line for a Redis or OVH that does not answer or refuses; ``None`` for anything else."""
    import ovh.exceptions
    import redis
    import requests

    from worker.ovhcloud.client import describe_error

    if isinstance(exc, redis.AuthenticationError):
        return f"Redis refused the password in REDIS_URL: {exc}"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return f"Redis does not answer: {exc}"
    if isinstance(exc, redis.RedisError):
        return f"Redis: {exc}"
    if isinstance(exc, ovh.exceptions.HTTPError | requests.RequestException):
        return f"OVH API does not answer: {describe_error(exc)}"
    if isinstance(exc, ovh.exceptions.APIError):
        return f"OVH refused the call: {describe_error(exc)}"
    return None


def chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``args`` chose (``campaign send``), so that a mistake is
    answered with that command's own usage, not the top-level one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(args, action.dest, None)
            if name in action.choices:
                return chosen(action.choices[name], args)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "passes_on", False):
        chosen(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    args.tool_args = unknown  # a developer tool's own arguments (worker.cli.devtools)
    _configure_logging(args.verbose)
    try:
        return int(args.func(args))
    except ConfigurationError as exc:
        print(f"sms-worker: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        line = outage(exc)
        if line is None or args.verbose:
            raise
        print(f"sms-worker: {line}", file=sys.stderr)
        return 1
