"""``sms-worker sandbox`` / ``python -m ovh_sandbox``: serve the sandbox in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import asdict
from types import FrameType
from typing import Any

from ovh_sandbox.faults import KINDS, FaultConfigError, FaultRule
from ovh_sandbox.sandbox import Sandbox
from ovh_sandbox.state import DEFAULT_CREDITS, DEFAULT_SENDER


def _fault(text: str) -> FaultRule:
    """``KIND:PROB`` (a probability) or ``KIND:xN`` (the next N jobs calls); ``@all`` for every route."""
    spec, _, scope = text.partition("@")
    kind, sep, amount = spec.partition(":")
    try:
        if not sep:
            raise ValueError("missing ':'")
        if amount.startswith("x"):
            return FaultRule(kind, next=int(amount[1:]), scope=scope or "jobs")
        return FaultRule(kind, probability=float(amount), scope=scope or "jobs")
    except (ValueError, FaultConfigError) as error:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected KIND:PROBABILITY or KIND:xN[@all], KIND one of {', '.join(KINDS)} ({error})"
        ) from None


def _seconds_range(text: str) -> tuple[float, float | None]:
    """``S`` or ``MIN-MAX`` seconds."""
    low, sep, high = text.partition("-")
    try:
        return float(low), float(high) if sep else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds, S or MIN-MAX") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of delivery outcomes and probabilistic faults")
    parser.add_argument("--credits", type=float, default=DEFAULT_CREDITS, help="credits of the default account")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every OVH call")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="random extra latency, uniform in [0, jitter]")
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="KIND:P|KIND:xN[@all]",
        help=f"inject a fault on jobs calls (or every call with @all); KIND: {', '.join(KINDS)}. Repeatable.",
    )
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds of injected 429s")
    parser.add_argument("--rate-limit", type=float, default=None, help="calls per second per consumer key (429 above)")
    parser.add_argument("--rate-limit-burst", type=float, default=None, help="burst of the rate limit")
    parser.add_argument("--hold-s", type=float, default=30.0, help="how long timeout_after_accept holds a call")
    parser.add_argument(
        "--slow-s",
        type=_seconds_range,
        default=(5.0, None),
        help="how long a slow call waits before it is carried out: S or MIN-MAX seconds (default 5)",
    )
    parser.add_argument(
        "--reply-rate", type=float, default=0.0, help="share of delivered senderForResponse SMS that get a reply"
    )
    parser.add_argument("--stop-rate", type=float, default=0.0, help="share of delivered commercial SMS answered STOP")


def main(argv: list[str] | None = None, *, prog: str = "sms-worker sandbox") -> int:
    """Parse ``argv`` and serve (``sms-worker sandbox`` hands its arguments over unparsed)."""
    parser = argparse.ArgumentParser(prog=prog, description="Serve the OVH SMS API sandbox in the foreground.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; 0 on a clean stop, 1 when the sandbox cannot start."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            delay_s, delay_max_s = args.slow_s
            rules = [
                FaultRule(
                    **{**asdict(r), "retry_after": args.retry_after, "delay_s": delay_s, "delay_max_s": delay_max_s}
                )
                for r in args.fault
            ]
            sandbox = Sandbox(
                host=args.host,
                port=args.port,
                seed=args.seed,
                credits=args.credits,
                latency_ms=args.latency_ms,
                jitter_ms=args.jitter_ms,
                faults=rules,
                rate_limit_per_s=args.rate_limit,
                rate_limit_burst=args.rate_limit_burst,
                hold_s=args.hold_s,
                reply_rate=args.reply_rate,
                stop_rate=args.stop_rate,
            ).start()
        except (OSError, FaultConfigError) as error:
            print(f"sms-worker sandbox: cannot start: {error}", file=sys.stderr)
            return 1
        try:
            _announce(sandbox)
            sandbox.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            sandbox.stop()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _announce(sandbox: Sandbox) -> None:
    credentials: dict[str, Any] = sandbox.credentials
    root = sandbox.base_url.removesuffix("/1.0")
    print(f"OVH SMS API sandbox serving {sandbox.base_url}", flush=False)
    print(f"  service name : {sandbox.service_name}")
    print(f"  control API  : {root}/_sandbox/ (e.g. curl {root}/_sandbox/counters)")
    print("Export these (and REDIS_URL) to point python-ovh or the worker at it:")
    print(f"export OVH_ENDPOINT={sandbox.base_url}")
    print(f"export OVH_APPLICATION_KEY={credentials['application_key']}")
    print(f"export OVH_APPLICATION_SECRET={credentials['application_secret']}")
    print(f"export OVH_CONSUMER_KEY={credentials['consumer_key']}")
    print(f"export SMS_WORKER_SERVICE_NAME={sandbox.service_name}")
    print(f"export SMS_WORKER_SENDER={DEFAULT_SENDER}")
    print("Ctrl-C to stop.", flush=True)
