"""``sms-worker usage``: SMS and credits per user, tag or sender over a period, from the worker's records.

``--from 2026-11-01 --to 2026-12-01`` is November (``--to`` excluded), days in
``SMS_WORKER_USAGE_TIMEZONE``; the counts are those ``settle.lua`` keeps per day
(``worker.accounting.usage``), so a month costs one Redis round trip and no OVH call.
``--check N`` compares them with OVH's ``GET /sms/{sn}/outgoing`` listings for the period and
reads N of its SMS for their credits (``worker.accounting.usage_check``); it exits 1 when a row
disagrees. A table for people, ``--json`` or ``--csv`` for scripts.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import date, timedelta
from typing import Any

from worker.cli.common import (
    check_ovh_credentials,
    credits_cell,
    load_settings,
    ovh_client,
    print_table,
    redis_for,
    service_of,
)
from worker.errors import UsageError

#: How a row without a value is shown, per dimension.
NONE_LABEL = {"user": "(account)", "tag": "(no tag)", "sender": "(short number)"}
#: How the values counted together past keys.USAGE_MAX_VALUES in a day are shown.
OTHERS_LABEL = "(other values)"
#: Default size of the --check sample (SMS read one by one from OVH).
DEFAULT_SAMPLE = 20
#: Most SMS --check reads one by one.
MAX_SAMPLE = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", help="OVH SMS account (default: SMS_WORKER_SERVICE_NAME)")
    parser.add_argument(
        "--from", dest="start", metavar="DAY", help="first day, YYYY-MM-DD (default: the 1st of this month)"
    )
    parser.add_argument(
        "--to", dest="end", metavar="DAY", help="the day after the last, YYYY-MM-DD (default: tomorrow)"
    )
    parser.add_argument("--by", choices=("user", "tag", "sender"), default="user", help="group by (default: user)")
    parser.add_argument("--per-day", action="store_true", help="one row per day and value")
    parser.add_argument(
        "--check",
        nargs="?",
        type=int,
        const=DEFAULT_SAMPLE,
        default=None,
        metavar="N",
        help=f"compare with OVH's records, reading N SMS for their credits (default {DEFAULT_SAMPLE})",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument("--csv", action="store_true", help="print CSV (one row per value) instead of a table")


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a day (YYYY-MM-DD)") from None


def run(args: argparse.Namespace) -> int:
    from worker.accounting.usage import Period, UsageStore, today, totals, zone

    settings = load_settings()
    service = service_of(args.service, settings)
    if args.check is not None and not 0 <= args.check <= MAX_SAMPLE:
        raise UsageError(f"--check takes 0 to {MAX_SAMPLE:,} SMS to read from OVH")
    tz = zone(settings.usage_timezone)
    now = today(tz)
    start = _day(args.start, "--from") if args.start else now.replace(day=1)
    end = _day(args.end, "--to") if args.end else now + timedelta(days=1)
    try:
        period = Period(start, end, tz)
    except ValueError as exc:
        raise UsageError(f"--from {start} --to {end}: {exc}") from None
    store = UsageStore(redis_for(settings, "usage"))
    rows = store.report(service, period, args.by, per_day=args.per_day)
    check = None
    if args.check is not None:
        from worker.accounting.usage_check import cross_check

        check_ovh_credentials(settings)
        by_value = rows if not args.per_day else store.report(service, period, args.by)
        check = cross_check(ovh_client(settings).get, service, period, args.by, by_value, sample=args.check)
    if args.json:
        _print_json(service, period, settings.usage_timezone, args.by, rows, check)
    elif args.csv:
        _print_csv(args.by, rows, args.per_day)
    else:
        _print_tables(service, period, settings.usage_timezone, args.by, rows, totals(rows), check, args.per_day)
    if check is not None and check.disagreements:
        print(
            f"sms-worker: the worker's records and OVH's disagree on {check.disagreements} row(s) of {service} "
            f"from {period.start} to {period.end}",
            file=sys.stderr,
        )
        return 1
    return 0


def _label(value: str | None, by: str) -> str:
    if value is None:
        return OTHERS_LABEL
    return value or NONE_LABEL[by]


def _row_json(row: Any, by: str, per_day: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {"day": row.day} if per_day else {}
    fields.update({by: row.value, "sms": row.sms, "credits": row.credits, "unknown": row.unknown})
    return fields


def _print_json(service: str, period: Any, tz: str, by: str, rows: list[Any], check: Any) -> None:
    from worker.accounting.usage import totals

    per_day = any(row.day for row in rows)
    total = totals(rows)
    data: dict[str, Any] = {
        "service": service,
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
        "timezone": tz,
        "by": by,
        "rows": [_row_json(row, by, per_day) for row in rows],
        "total": {"sms": total.sms, "credits": total.credits, "unknown": total.unknown},
    }
    if check is not None:
        data["check"] = check.as_json(by)
    print(json.dumps(data, indent=2))


def _print_csv(by: str, rows: list[Any], per_day: bool) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow((["day"] if per_day else []) + [by, "sms", "credits", "unknown"])
    for row in rows:
        value = "" if row.value is None else row.value
        writer.writerow(([row.day] if per_day else []) + [value, row.sms, f"{round(row.credits, 6):g}", row.unknown])


def _print_tables(
    service: str, period: Any, tz: str, by: str, rows: list[Any], total: Any, check: Any, per_day: bool
) -> None:
    last = period.end - timedelta(days=1)
    print(f"{service}: {period.start} to {last} included ({tz}), by {by}")
    table: list[tuple[str, ...]] = [(*(("DAY",) if per_day else ()), by.upper(), "SMS", "CREDITS", "UNKNOWN")]
    for row in rows:
        cells = (_label(row.value, by), f"{row.sms:,}", credits_cell(row.credits), f"{row.unknown:,}")
        table.append(((row.day or "",) if per_day else ()) + cells)
    total_cells = ("total", f"{total.sms:,}", credits_cell(total.credits), f"{total.unknown:,}")
    table.append((("",) if per_day else ()) + total_cells)
    print_table(table)
    if not rows:
        print("(no SMS settled in this period)")
    if check is None:
        return
    print()
    print(
        f"check against OVH: {check.ovh_period_sms:,} SMS created in the period at OVH, {check.worker_sms:,} "
        f"counted by the worker; {check.read:,} read for their credits"
        + (f", {check.read_outside} of them outside the period" if check.read_outside else "")
    )
    checks: list[tuple[str, ...]] = [(by.upper(), "SMS", "OVH SMS", "CREDITS", "OVH CREDITS", "CHECK")]
    for c in check.rows:
        verdict = {True: "ok", False: "DIFFERS", None: "not checkable"}[c.agrees]
        checks.append(
            (_label(c.value, by), f"{c.worker_sms:,}", "-" if c.ovh_sms is None else f"{c.ovh_sms:,}",
             credits_cell(c.worker_credits), "-" if c.ovh_credits is None else credits_cell(c.ovh_credits), verdict)
        )  # fmt: skip
    print_table(checks)
