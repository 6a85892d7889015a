"""``sms-worker send``: queue one SMS, optionally wait for its result."""

from __future__ import annotations

import argparse
import json
import sys

from pydantic import ValidationError

from contracts.wire import LANES
from worker.cli.common import load_settings, redis_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", action="append", required=True, help="receiver; repeat for several")
    parser.add_argument("--message", required=True)
    parser.add_argument("--priority", choices=LANES)
    parser.add_argument("--user", help="OVH SMS API user login")
    parser.add_argument("--sender")
    parser.add_argument("--service", help="OVH SMS account (default: the worker's)")
    parser.add_argument("--tag")
    parser.add_argument("--no-stop-clause", action="store_true", default=None, help="not commercial: no STOP mention")
    parser.add_argument("--wait", action="store_true", help="wait for the result and print it")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")


def run(args: argparse.Namespace) -> int:
    from contracts import SmsProducer

    client = redis_for(load_settings(), "send")
    fields = {
        "priority": args.priority,
        "user": args.user,
        "sender": args.sender,
        "service_name": args.service,
        "tag": args.tag,
        "no_stop_clause": args.no_stop_clause,
    }
    with SmsProducer(client=client) as producer:
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
