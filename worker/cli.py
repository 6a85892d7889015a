"""``sms-worker``: run the worker, send one SMS, run the demo, or serve the OVH sandbox."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
import threading
from typing import Any

from pydantic import ValidationError

from contracts.wire import LANES

from .errors import ConfigurationError


def _settings(**overrides: Any) -> Any:
    from .settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigurationError(f"invalid configuration: {exc}") from None


def check_production_config(settings: Any) -> None:
    """Refuse to run without a broker or OVH credentials; never fall back to the sandbox."""
    import ovh.exceptions

    from .ovh_client import make_client

    if not settings.redis_url:
        raise ConfigurationError("REDIS_URL is not set: sms-worker run needs the Redis broker the producers use")
    try:
        make_client(settings.ovh_endpoint)
    except (ovh.exceptions.InvalidConfiguration, ovh.exceptions.InvalidRegion) as exc:
        raise ConfigurationError(
            f"OVH credentials are missing or invalid ({exc}): set OVH_APPLICATION_KEY, OVH_APPLICATION_SECRET and "
            "OVH_CONSUMER_KEY (or OVH_CLIENT_ID and OVH_CLIENT_SECRET), or provide an ovh.conf"
        ) from None


def cmd_run(args: argparse.Namespace) -> int:
    from .app import build_app

    settings = _settings(lanes=args.lanes, threads=args.threads, dispatchers=args.dispatchers)
    check_production_config(settings)
    # Accept threads are CPU-bound; dispatchers wait on Redis and OVH. A shorter GIL switch
    # interval (default 5 ms) lets a dispatcher whose answer arrived run sooner, which is what
    # keeps one-time codes fast while a campaign is being accepted.
    sys.setswitchinterval(0.001)
    app = build_app(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger(__name__).info(
        "consuming lanes %s with %d threads and %d dispatchers",
        ",".join(settings.lanes),
        settings.threads,
        settings.dispatchers,
    )
    app.start()
    stop.wait()
    logging.getLogger(__name__).info("stopping: finishing in-flight calls")
    app.stop()
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from contracts import SmsProducer

    settings = _settings()
    if not settings.redis_url:
        raise ConfigurationError("REDIS_URL is not set: sms-worker send publishes into the worker's Redis")
    fields = {
        "priority": args.priority,
        "user": args.user,
        "sender": args.sender,
        "service_name": args.service,
        "tag": args.tag,
        "no_stop_clause": args.no_stop_clause,
    }
    with SmsProducer(settings.redis_url) as producer:
        try:
            request_id = producer.send(args.to, args.message, **{k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(request_id)
        if not args.wait:
            return 0
        result = producer.wait(request_id, timeout=args.timeout)
        print(json.dumps(result.model_dump(mode="json", exclude_none=True), indent=2))
        return 0 if result.status == "sent" else 1


def cmd_quotas(args: argparse.Namespace) -> int:
    """Show every user's quota; with ``sync``, read the users' quotas from OVH first."""
    import redis

    from .quotas import QuotaStore, sync_from_ovh

    settings = _settings()
    if not settings.redis_url:
        raise ConfigurationError("REDIS_URL is not set: sms-worker quotas reads the worker's Redis")
    client = redis.Redis.from_url(settings.redis_url)
    store = QuotaStore(client)
    if args.quotas_command == "sync":
        from .ovh_client import make_client

        service = args.service or settings.service_name
        if service is None:
            raise ConfigurationError("no SMS account: pass --service or set SMS_WORKER_SERVICE_NAME")
        check_production_config(settings)
        ovh = make_client(settings.ovh_endpoint, timeout=(settings.ovh_connect_timeout_s, settings.ovh_read_timeout_s))
        synced = sync_from_ovh(store, ovh, service, args.user, alert_sms=settings.quota_alert_sms)
        print(f"synced {len(synced)} user(s) of {service} from OVH", file=sys.stderr)
    states = store.all()
    if args.json:
        print(json.dumps([{**dataclasses.asdict(s), "left": s.left} for s in states], indent=2))
        return 0
    rows = [("SERVICE", "USER", "QUOTA", "RESERVED", "SPENT", "LEFT", "ALERT AT", "ALERT")]
    for s in states:
        alert = "-" if s.threshold is None else ("armed" if s.armed else f"sent ({s.crossings})")
        rows.append(
            (s.service, s.login, _credits(s.quota), _credits(s.reserved), _credits(s.spent), _credits(s.left),
             _credits(s.threshold), alert)
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _credits(value: float | None) -> str:
    """Credits for a table: no limit as ``-``, whole numbers without decimals."""
    if value is None:
        return "-"
    return f"{round(value, 6):g}"


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()


def cmd_sandbox(args: argparse.Namespace) -> int:
    from .sandbox import cli as sandbox_cli

    return sandbox_cli.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sms-worker", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a worker process (needs REDIS_URL and OVH credentials)")
    run.add_argument("--lanes", help=f"comma-separated subset of {','.join(LANES)} (default: all)")
    run.add_argument("--threads", type=int, help="accept threads (default SMS_WORKER_THREADS or 1)")
    run.add_argument("--dispatchers", type=int, help="dispatch threads (default SMS_WORKER_DISPATCHERS or 4)")
    run.set_defaults(func=cmd_run)

    send = commands.add_parser("send", help="queue one SMS (needs REDIS_URL)")
    send.add_argument("--to", action="append", required=True, help="receiver; repeat for several")
    send.add_argument("--message", required=True)
    send.add_argument("--priority", choices=LANES)
    send.add_argument("--user", help="OVH SMS API user login")
    send.add_argument("--sender")
    send.add_argument("--service", help="OVH SMS account (default: the worker's)")
    send.add_argument("--tag")
    send.add_argument("--no-stop-clause", action="store_true", default=None, help="not commercial: no STOP mention")
    send.add_argument("--wait", action="store_true", help="wait for the result and print it")
    send.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    send.set_defaults(func=cmd_send)

    quotas = commands.add_parser("quotas", help="show each user's quota, reserved, spent and left (needs REDIS_URL)")
    quotas.add_argument("--json", action="store_true", help="print JSON instead of a table")
    quotas_commands = quotas.add_subparsers(dest="quotas_command")
    sync = quotas_commands.add_parser("sync", help="read the users' quotas and alert thresholds from OVH first")
    sync.add_argument("--service", help="OVH SMS account (default: SMS_WORKER_SERVICE_NAME)")
    sync.add_argument("--user", action="append", help="user login; repeat for several (default: all the account's)")
    sync.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of a table")
    quotas.set_defaults(func=cmd_quotas)

    demo = commands.add_parser("demo", help="run everything locally (private Redis, sandbox, worker) and send")
    demo.set_defaults(func=cmd_demo)

    sandbox = commands.add_parser("sandbox", help="serve the OVH SMS API sandbox")
    from .sandbox import cli as sandbox_cli

    sandbox_cli.add_arguments(sandbox)
    sandbox.set_defaults(func=cmd_sandbox)
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


if __name__ == "__main__":
    raise SystemExit(main())
