"""``sms-worker dlq list|show|replay|drop``: the dead letters of the lanes' queues.

``list`` shows each dead letter with its lane, when, why, and the state of its requests;
``replay`` queues again only the requests that have no result and are not in flight, so nothing
is ever sent twice (a request with a result is reported and left, or dropped with
``--drop-done``); ``drop`` forgets dead letters. Ids may be shortened to a unique prefix.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from contracts.wire import LANES
from worker.cli.common import load_settings, print_table, redis_for
from worker.errors import UsageError

#: Shortest id prefix accepted.
MIN_PREFIX = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="dlq_command", required=True, metavar="{list,show,replay,drop}")
    listing = commands.add_parser("list", help="every dead letter, with its reason and its requests' state")
    show = commands.add_parser("show", help="one dead letter (receivers masked, no text; --raw for the body)")
    show.add_argument("id", help="its id, or a unique prefix of it")
    show.add_argument("--raw", action="store_true", help="print the message body as stored")
    replay = commands.add_parser("replay", help="queue again the requests that have no result yet")
    drop = commands.add_parser("drop", help="forget dead letters")
    for command in (replay, drop):
        command.add_argument("ids", nargs="*", metavar="ID", help="ids or unique prefixes")
        command.add_argument("--all", action="store_true", help="every dead letter (of --lane)")
    replay.add_argument("--drop-done", action="store_true", help="drop dead letters whose requests all have results")
    drop.add_argument("--yes", action="store_true", help="needed with --all")
    for command in (listing, show, replay, drop):
        command.add_argument("--lane", choices=LANES, action="append", help="only this lane; repeat for several")
        command.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def run(args: argparse.Namespace) -> int:
    from worker.intake.dead_letters import DeadLetters

    settings = load_settings()
    dead = DeadLetters(redis_for(settings, "dlq"))
    lanes = args.lane or list(LANES)
    command = args.dlq_command
    if command == "list":
        letters = dead.all(lanes)
        if args.json:
            print(json.dumps([letter.summary() for letter in letters], indent=2))
            return 0
        rows = [("ID", "LANE", "AT (UTC)", "STATE", "REQUESTS", "REASON")]
        for letter in letters:
            ids = [item.request_id or "?" for item in letter.items]
            requests = ids[0] if len(ids) == 1 else f"{len(ids)}: {ids[0]}, ..."
            rows.append((letter.message_id, letter.lane, _at(letter.at_ms), letter.state, requests, letter.reason))
        print_table(rows)
        return 0
    if command == "show":
        letter = _one(dead, args.id, lanes)
        if args.raw:
            print(letter.body.decode("utf-8", "replace"))
            return 0
        data = {**letter.summary(), "at": _at(letter.at_ms), "requests": [_masked(item) for item in letter.items]}
        if args.json:
            print(json.dumps(data, indent=2))
            return 0
        fields: list[tuple[str, str]] = [("DEAD LETTER", letter.message_id)]
        fields += [(name, str(data[name])) for name in ("lane", "at", "state", "reason", "retries")]
        for n, shown in enumerate(data["requests"], start=1):
            fields.append((f"request {n}", ", ".join(f"{k} {v}" for k, v in shown.items() if v is not None)))
        print_table(fields)
        return 0
    letters = _chosen(dead, args, lanes)
    outcomes = [(letter, _replay(dead, letter, args.drop_done) if command == "replay" else _drop(dead, letter))
                for letter in letters]  # fmt: skip
    if args.json:
        print(json.dumps([{"id": letter.message_id, "outcome": what} for letter, what in outcomes], indent=2))
    else:
        print_table([("ID", "OUTCOME"), *[(letter.message_id, what) for letter, what in outcomes]])
    return 0


def _one(dead: Any, prefix: str, lanes: list[str]) -> Any:
    if len(prefix) < MIN_PREFIX:
        raise UsageError(f"id {prefix!r}: give at least {MIN_PREFIX} characters")
    found = dead.find(prefix, lanes)
    if not found:
        raise UsageError(f"no dead letter has an id starting with {prefix!r}")
    if len(found) > 1:
        raise UsageError(f"{len(found)} dead letters have an id starting with {prefix!r}: give more of it")
    return found[0]


def _chosen(dead: Any, args: argparse.Namespace, lanes: list[str]) -> list[Any]:
    if args.all == bool(args.ids):
        raise UsageError(f"dlq {args.dlq_command}: name dead letters by id, or pass --all")
    if args.all:
        if args.dlq_command == "drop" and not args.yes:
            raise UsageError("dlq drop --all forgets every dead letter: add --yes")
        return list(dead.all(lanes))
    return [_one(dead, prefix, lanes) for prefix in dict.fromkeys(args.ids)]


def _replay(dead: Any, letter: Any, drop_done: bool) -> str:
    state = letter.state
    if state == "replayable":
        n = sum(1 for item in letter.items if item.state == "no result")
        what = dead.replay(letter)
        if what == "replayed":
            return f"replayed {n} request(s)"
        if what == "changed":
            return "left: a request was accepted meanwhile (look again)"
        return "left: gone meanwhile (replayed or dropped by someone else)"
    if state == "done":
        if drop_done:
            dead.drop(letter)
            return "dropped: every request has its result"
        return "left: every request has its result (--drop-done drops it)"
    if state == "in flight":
        return "left: accepted by the worker, no result yet"
    if state == "unreadable":
        return f"left: cannot be replayed ({letter.reason}); drop it"
    return "left: its requests are done or in flight"


def _drop(dead: Any, letter: Any) -> str:
    return "dropped" if dead.drop(letter) else "gone already"


def _masked(item: Any) -> dict[str, Any]:
    """A request of a dead letter without its text and with receivers masked."""
    from worker.phones import mask_number

    payload = item.payload if isinstance(item.payload, dict) else {}
    shown: dict[str, Any] = {"request_id": item.request_id, "state": item.state, "status": item.status}
    if item.problem:
        shown["problem"] = item.problem
    receivers = payload.get("receivers")
    if isinstance(receivers, list):
        shown["receivers"] = [mask_number(str(r)) for r in receivers[:20]] + (["..."] if len(receivers) > 20 else [])
    for name in ("priority", "tag", "user", "service_name", "reply_to"):
        if payload.get(name) is not None:
            shown[name] = payload[name]
    if isinstance(payload.get("message"), str):
        shown["message_chars"] = len(payload["message"])
    return shown
