"""``sms-worker send``: queue one SMS, optionally wait for its result.

The request is checked here as ``campaign send`` checks a row, before anything is queued: an
empty text, one too long for OVH (parts counted as OVH bills them), a ``#variable#`` no
``--var`` fills, a number that is not a phone number, or any other field the contract refuses,
is one line naming the option and why, and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from contracts.wire import LANES
from worker.cli.common import load_settings, redis_for
from worker.errors import UsageError

#: The option of each ``SendRequest`` field whose name differs.
OPTIONS = {"receivers": "to", "service_name": "service", "variables": "var"}
#: Exit status of ``--wait`` when no result came in time (the request stays queued).
EXIT_NO_RESULT = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", action="append", required=True, help="receiver; repeat for several")
    parser.add_argument(
        "--message", required=True, help="the text, as it should arrive (#name# is filled by --var name=...)"
    )
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="value of #NAME# in the message, the same for every receiver; repeat for several",
    )
    parser.add_argument("--priority", choices=LANES, help="OVH priority and worker lane (default medium)")
    parser.add_argument("--user", help="OVH SMS API user login")
    parser.add_argument("--sender", help="declared OVH sender (default: SMS_WORKER_SENDER)")
    parser.add_argument("--service", help="OVH SMS account (default: the worker's)")
    parser.add_argument("--tag", help="OVH tag of the SMS, up to 128 characters; campaign report reads it")
    parser.add_argument("--no-stop-clause", action="store_true", default=None, help="not commercial: no STOP mention")
    parser.add_argument("--wait", action="store_true", help="wait for the result and print it")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")


def variables(given: list[str]) -> dict[str, str]:
    """``--var NAME=VALUE`` options as a dict."""
    values: dict[str, str] = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--var {item!r}: write NAME=VALUE")
        values[name] = value
    return values


def build_request(args: argparse.Namespace, default_region: str) -> Any:
    """The ``SendRequest`` the options make, or ``UsageError`` naming the option and why."""
    from pydantic import ValidationError

    from contracts.models import PLACEHOLDER, SendRequest, describe_validation_error
    from worker import phones
    from worker.accounting import credits
    from worker.intake import mailmerge

    if not args.message.strip():
        raise UsageError("--message is empty: give the text to send")
    values = variables(args.var)
    names = list(dict.fromkeys(PLACEHOLDER.findall(args.message)))
    missing = [name for name in names if name not in values]
    if missing:
        raise UsageError(f"--message uses #{missing[0]}#, which no --var gives (add --var {missing[0]}=...)")
    unused = [name for name in values if name not in names]
    if unused:
        raise UsageError(f"--var {unused[0]}: the message has no #{unused[0]}#")
    try:
        credits.estimate(mailmerge.render(args.message, values), no_stop_clause=bool(args.no_stop_clause))
    except credits.MessageTooLong as exc:
        raise UsageError(f"--message is too long: {exc}") from None
    for receiver in args.to:
        number = phones.normalize(receiver, default_region)
        if number.e164 is None:
            raise UsageError(f"--to {receiver!r}: {number.reason}")
    fields = {
        "priority": args.priority,
        "user": args.user,
        "sender": args.sender,
        "service_name": args.service,
        "tag": args.tag,
        "no_stop_clause": args.no_stop_clause,
        "variables": {receiver: values for receiver in args.to} if values else None,
    }
    try:
        return SendRequest(
            message=args.message, receivers=args.to, **{k: v for k, v in fields.items() if v is not None}
        )
    except ValidationError as exc:
        field, why = describe_validation_error(exc)
        name = (field or "message").split(".")[0]
        option = OPTIONS.get(name, name.replace("_", "-"))
        raise UsageError(f"--{option}: {why.removeprefix(f'{field}: ')}") from None


def run(args: argparse.Namespace) -> int:
    from contracts import ResultTimeout, SmsProducer

    settings = load_settings()
    request = build_request(args, settings.default_region)
    with SmsProducer(client=redis_for(settings, "send")) as producer:
        (request_id,) = producer.publish([request])
        print(request_id)
        if not args.wait:
            return 0
        try:
            result = producer.wait(request_id, timeout=args.timeout)
        except ResultTimeout:
            print(
                f"sms-worker: no result for {request_id} within {args.timeout:g} s: the request stays queued and is "
                "sent once a worker takes it (is sms-worker run running?); do not send it again",
                file=sys.stderr,
            )
            return EXIT_NO_RESULT
        print(json.dumps(result.model_dump(mode="json", exclude_none=True), indent=2))
        return 0 if result.status == "sent" else 1
