"""``sms-worker account``: the SMS account as OVH sees it, and as the worker does.

OVH's side (``GET /sms/{sn}``, ``GET /sms/{sn}/senders`` and each sender): credits left, credits
held by users' quotas, the senders and their status (only ``enable`` ones can send). The
worker's side (``REDIS_URL``): each user's quota, credits reserved by requests not yet settled,
credits spent, and what is left, as ``sms-worker quotas`` shows them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", help="OVH SMS account (default: SMS_WORKER_SERVICE_NAME)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    service = service_of(args.service, settings)
    check_ovh_credentials(settings)
    client = ovh_client(settings)
    account = client.get(f"/sms/{service}")
    senders = [client.get(f"/sms/{service}/senders/{name}") for name in client.get(f"/sms/{service}/senders")]
    worker = _worker_view(settings, service)
    data: dict[str, Any] = {
        "service": service,
        "status": account.get("status"),
        "credits_left": account.get("creditsLeft"),
        "credits_held_by_quotas": account.get("creditsHoldByQuota"),
        "users_with_quota": account.get("userQuantityWithQuota"),
        "senders": [
            {"sender": s.get("sender"), "status": s.get("status"), "type": s.get("type"), "comment": s.get("comment")}
            for s in senders
        ],
        "worker": worker,
    }
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print_table(
        [
            ("ACCOUNT", service),
            ("status", str(data["status"])),
            ("credits left", credits_cell(data["credits_left"])),
            ("held by quotas", f"{credits_cell(data['credits_held_by_quotas'])} ({data['users_with_quota']} users)"),
        ]
    )
    print()
    rows = [("SENDER", "STATUS", "TYPE", "COMMENT")]
    for s in data["senders"]:
        rows.append((str(s["sender"]), str(s["status"]), str(s["type"] or "-"), str(s["comment"] or "-")))
    print_table(rows)
    print()
    if worker is None:
        print("worker: REDIS_URL is not set, so the worker's quotas are not shown", file=sys.stderr)
        return 0
    users: list[tuple[str, ...]] = [("WORKER: USER", "QUOTA", "RESERVED", "SPENT", "LEFT")]
    users += [
        (u["login"], credits_cell(u["quota"]), credits_cell(u["reserved"]), credits_cell(u["spent"]),
         credits_cell(u["left"]))
        for u in worker["users"]
    ]  # fmt: skip
    users.append(("total", "", credits_cell(worker["reserved"]), credits_cell(worker["spent"]), ""))
    print_table(users)
    return 0


def _worker_view(settings: Any, service: str) -> dict[str, Any] | None:
    if not settings.redis_url:
        return None
    from worker.accounting.quotas import QuotaStore

    states = [s for s in QuotaStore(redis_for(settings, "account")).all() if s.service == service]
    users = [{**dataclasses.asdict(s), "left": s.left} for s in states]
    return {
        "users": users,
        "reserved": sum(s.reserved for s in states),
        "spent": sum(s.spent for s in states),
    }
