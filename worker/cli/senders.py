"""``sms-worker senders list|show|add|delete``: the senders of an SMS account and their validation.

OVH validates each sender by hand (``POST /sms/{sn}/senders``, then ``GET .../senders/{sender}``
shows its ``status``: ``waitingValidation``, ``enable``, ``refused`` with the moderator's
``comment``, or ``disable``); only ``enable`` senders can send. A name is checked here before
OVH is called: 11 characters at most among letters, digits, space, ``.``, ``_`` and ``-`` (what
the worker's requests accept, ``contracts.models.SENDER_PATTERN``, within OVH's "11 alphanumeric
characters"), or a phone number of 3 to 15 digits; OVH wants a reason for the moderator (250
characters at most, as its Control Panel) and takes a description of 40 at most. After ``add`` or
``delete``, the worker's shared cache of sender statuses is updated when ``REDIS_URL`` is set, so
its replicas follow at once.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from contracts.models import SENDER_PATTERN
from worker.cli.common import check_ovh_credentials, load_settings, ovh_client, print_table, redis_for, service_of
from worker.errors import UsageError

#: The longest alphanumeric sender OVH takes.
MAX_NAME = 11
#: Longest description and reason OVH's Control Panel lets through.
MAX_DESCRIPTION = 40
MAX_REASON = 250
_NUMERIC = re.compile(r"^\+?[0-9]+$")
_ALLOWED = re.compile(r"[A-Za-z0-9 ._-]")

#: What each status means, as OVHcloud's guide puts it.
STATUS_MEANING = {
    "waitingValidation": "waiting for OVH's manual validation",
    "enable": "usable",
    "refused": "refused by OVH (see the comment)",
    "disable": "disabled for now; can be enabled again",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", help="OVH SMS account (default: SMS_WORKER_SERVICE_NAME)")
    commands = parser.add_subparsers(dest="senders_command", required=True, metavar="{list,show,add,delete}")
    listing = commands.add_parser("list", help="every sender with its status and OVH's comment")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = commands.add_parser("show", help="one sender")
    show.add_argument("sender", help="the sender, as OVH lists it")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add = commands.add_parser("add", help="declare a sender; OVH then validates it by hand")
    add.add_argument("sender", help=f"a name of {MAX_NAME} characters at most, or a phone number")
    add.add_argument(
        "--reason", required=True, help=f"for OVH's moderator: who you are, why this name ({MAX_REASON} max)"
    )
    add.add_argument("--description", default="", help=f"for you ({MAX_DESCRIPTION} characters at most)")
    add.add_argument("--json", action="store_true", help="print JSON instead of a table")
    delete = commands.add_parser("delete", help="delete a sender (requests naming it are refused afterwards)")
    delete.add_argument("sender", help="the sender to delete")
    delete.add_argument("--yes", action="store_true", help="really delete")


def check_sender(name: str) -> str:
    """``name`` if OVH can take it as a sender; else ``UsageError`` saying why."""
    if _NUMERIC.match(name):
        digits = len(name.lstrip("+"))
        if not 3 <= digits <= 15:
            raise UsageError(f"sender {name!r}: a phone number sender has 3 to 15 digits, not {digits}")
        return name
    if not name.strip():
        raise UsageError("sender: empty name")
    wrong = sorted({char for char in name if not _ALLOWED.fullmatch(char)})
    if wrong:
        shown = " ".join(repr(char) for char in wrong)
        raise UsageError(f"sender {name!r}: {shown} not allowed: letters A-Z, digits, space, '.', '_' or '-' only")
    if len(name) > MAX_NAME:
        raise UsageError(f"sender {name!r}: {len(name)} characters; OVH takes {MAX_NAME} at most")
    if name != name.strip():
        raise UsageError(f"sender {name!r}: no space at either end")
    if not re.match(SENDER_PATTERN, name):  # what requests may name (the checks above explain it)
        raise UsageError(f"sender {name!r} is not a sender requests could name")
    return name


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    service = service_of(args.service, settings)
    command = args.senders_command
    if command in ("show", "delete"):
        _check_path_segment(args.sender)
    if command == "add":
        check_sender(args.sender)
        if not args.reason.strip() or len(args.reason) > MAX_REASON:
            raise UsageError(f"--reason: 1 to {MAX_REASON} characters for OVH's moderator")
        if len(args.description) > MAX_DESCRIPTION:
            raise UsageError(f"--description: {MAX_DESCRIPTION} characters at most")
    if command == "delete" and not args.yes:
        raise UsageError(f"deleting sender {args.sender} of {service} cannot be undone: add --yes")
    check_ovh_credentials(settings)
    client = ovh_client(settings)
    base = f"/sms/{service}/senders"
    if command == "list":
        return _print([client.get(f"{base}/{name}") for name in client.get(base)], args.json)
    if command == "show":
        return _print([client.get(f"{base}/{args.sender}")], args.json)
    if command == "delete":
        client.delete(f"{base}/{args.sender}")
        _cache(settings, service, args.sender, "missing")
        print(f"deleted sender {args.sender} of {service}", file=sys.stderr)
        return 0
    body = {"sender": args.sender, "reason": args.reason}
    if args.description:
        body["description"] = args.description
    client.post(base, **body)
    sender = client.get(f"{base}/{args.sender}")
    _cache(settings, service, args.sender, str(sender.get("status")))
    code = _print([sender], args.json)
    if sender.get("status") != "enable":
        print(
            f"sender {args.sender} declared on {service}: OVH validates senders by hand (usually within 72 hours, "
            f"and may ask for a supporting document). Follow it with: sms-worker senders show {args.sender} "
            "(waitingValidation, then enable, or refused with OVH's comment)",
            file=sys.stderr,
        )
    return code


def _check_path_segment(sender: str) -> None:
    if not sender or "/" in sender or "?" in sender or "#" in sender:
        raise UsageError(f"sender {sender!r} is not a sender name")


def _cache(settings: Any, service: str, sender: str, status: str) -> None:
    """Tell the worker's shared cache of senders (when REDIS_URL is set)."""
    if not settings.redis_url:
        return
    from worker.ovhcloud.senders import Senders

    Senders(redis_for(settings, "senders"), ttl_s=settings.sender_cache_ttl_s).record(service, sender, status)


def _print(senders: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        print(json.dumps(senders, indent=2))
        return 0
    rows = [("SENDER", "STATUS", "MEANING", "TYPE", "DESCRIPTION", "OVH'S COMMENT")]
    for s in senders:
        status = str(s.get("status"))
        rows.append(
            (str(s.get("sender")), status, STATUS_MEANING.get(status, "-"), str(s.get("type") or "-"),
             s.get("description") or "-", s.get("comment") or "-")
        )  # fmt: skip
    print_table(rows)
    return 0
