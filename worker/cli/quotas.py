"""``sms-worker quotas [sync]``: each user's quota, reserved, spent and left; sync reads OVH's first."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from worker.cli.common import (
    check_production_config,
    credits_cell,
    load_settings,
    ovh_client,
    print_table,
    redis_for,
    service_of,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands = parser.add_subparsers(dest="quotas_command")
    sync = commands.add_parser("sync", help="read the users' quotas and alert thresholds from OVH first")
    sync.add_argument("--service", help="OVH SMS account (default: SMS_WORKER_SERVICE_NAME)")
    sync.add_argument("--user", action="append", help="user login; repeat for several (default: all the account's)")
    sync.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from worker.accounting.quotas import QuotaStore, sync_from_ovh

    settings = load_settings()
    store = QuotaStore(redis_for(settings, "quotas"))
    if args.quotas_command == "sync":
        service = service_of(args.service, settings)
        check_production_config(settings, "quotas sync")
        synced = sync_from_ovh(store, ovh_client(settings), service, args.user, alert_sms=settings.quota_alert_sms)
        print(f"synced {len(synced)} user(s) of {service} from OVH", file=sys.stderr)
    states = store.all()
    if args.json:
        print(json.dumps([{**dataclasses.asdict(s), "left": s.left} for s in states], indent=2))
        return 0
    rows = [("SERVICE", "USER", "QUOTA", "RESERVED", "SPENT", "LEFT", "ALERT AT", "ALERT")]
    for s in states:
        alert = "-" if s.threshold is None else ("armed" if s.armed else f"sent ({s.crossings})")
        rows.append(
            (s.service, s.login, credits_cell(s.quota), credits_cell(s.reserved), credits_cell(s.spent),
             credits_cell(s.left), credits_cell(s.threshold), alert)
        )  # fmt: skip
    print_table(rows)
    return 0
