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

from ..errors import ConfigurationError
from . import account, callbacks, campaign, dlq, health, inbound, quotas, run, send, users


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


def _version() -> str:
    try:
        return metadata.version("ovh-sms-worker")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sms-worker", description=__doc__.splitlines()[0])
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
    _add(commands, "dlq", dlq, "list, show, replay or drop the lanes' dead letters")
    demo = commands.add_parser("demo", help="run everything locally (private Redis, sandbox, worker) and send")
    demo.set_defaults(func=_demo)
    sandbox = commands.add_parser("sandbox", help="serve the OVH SMS API sandbox")
    from ..sandbox import cli as sandbox_cli

    sandbox_cli.add_arguments(sandbox)
    sandbox.set_defaults(func=_sandbox)
    return parser


def _configure_logging(verbose: bool) -> None:
    """From SMS_WORKER_LOG_FORMAT and SMS_WORKER_LOG_LEVEL; defaults when the settings are
    invalid (the command reports that itself)."""
    from ..ops.logs import configure_logging
    from .common import load_settings

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

    from ..ovhcloud.client import describe_error

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
