"""``sms-worker usage --check``: the worker's consumption per user, tag or sender against OVH's records.

OVH's ``GET /sms/{sn}/outgoing`` lists the ids of the SMS created in a period
(``creationDatetime.from`` / ``.to``, inclusive, whole seconds), and takes a ``tag`` or a
``sender`` filter; per API user, ``GET /sms/{sn}/users/{login}/outgoing`` takes no dates, so a
user's SMS in the period are those of its listing that the period's listing has too, and the
account's own (no user) the period's others. Counts come from listings alone; credits from
reading SMS one by one (``GET .../outgoing/{id}``), for a random sample of ``sample`` of them: a
value's credits are compared when every one of its SMS was read.

Cost in OVH calls: 1 listing of the period, then 1 per user (``--by user``: plus the list of
users) or 1 per tag or sender, then ``sample`` reads. SMS without a tag or a sender (OVH's short
number) cannot be filtered for, so those rows are not checked. OVH keeps about 6 months of
history: an older period cannot agree.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from worker.accounting.usage import Period, UsageRow

Get = Callable[..., Any]

#: Credits that differ by less than this are equal (sums of apportioned shares).
CREDITS_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class CheckedRow:
    value: str | None
    worker_sms: int
    worker_credits: float
    ovh_sms: int | None  # None: OVH cannot be asked for this value
    ovh_credits: float | None  # None: not every SMS of the value was read

    @property
    def agrees(self) -> bool | None:
        if self.ovh_sms is None:
            return None
        credits_ok = self.ovh_credits is None or abs(self.ovh_credits - self.worker_credits) < CREDITS_TOLERANCE
        return self.ovh_sms == self.worker_sms and credits_ok


@dataclass(frozen=True, slots=True)
class Check:
    rows: list[CheckedRow]
    ovh_period_sms: int  # every SMS OVH created in the period, whoever sent it
    worker_sms: int
    read: int  # SMS read one by one
    read_outside: int  # of those, created outside the period (OVH's filter disagreeing: never expected)

    @property
    def disagreements(self) -> int:
        return sum(1 for row in self.rows if row.agrees is False) + (self.read_outside > 0)

    def as_json(self, by: str) -> dict[str, Any]:
        return {
            "ovh_period_sms": self.ovh_period_sms,
            "worker_sms": self.worker_sms,
            "sms_read": self.read,
            "sms_read_outside_period": self.read_outside,
            "rows": [
                {
                    by: row.value,
                    "worker_sms": row.worker_sms,
                    "ovh_sms": row.ovh_sms,
                    "worker_credits": row.worker_credits,
                    "ovh_credits": row.ovh_credits,
                    "agrees": row.agrees,
                }
                for row in self.rows
            ],
        }


def ovh_window(period: Period) -> dict[str, str]:
    """The period as OVH's inclusive ``creationDatetime`` filters (whole seconds)."""
    start, end = period.bounds()
    return {
        "creationDatetime.from": start.isoformat(),
        "creationDatetime.to": (end - timedelta(seconds=1)).isoformat(),
    }


def cross_check(
    get: Get,
    service: str,
    period: Period,
    by: str,
    rows: Sequence[UsageRow],
    *,
    sample: int,
    seed: int | None = None,
) -> Check:
    """Compare ``rows`` (the worker's, over ``period``) with OVH's records; see the module's docstring."""
    base = f"/sms/{service}/outgoing"
    window = ovh_window(period)
    in_period = {int(i) for i in get(base, **window)}
    ids: dict[str | None, set[int] | None] = {row.value: None for row in rows}
    if by == "user":
        users: set[int] = set()
        for login in get(f"/sms/{service}/users"):
            mine = {int(i) for i in get(f"/sms/{service}/users/{login}/outgoing")} & in_period
            users |= mine
            if mine or login in ids:
                ids[str(login)] = mine
        ids[""] = in_period - users
    else:
        for value in list(ids):
            if value:  # "" (none) and None (values counted together) cannot be asked for
                ids[value] = {int(i) for i in get(base, **window, **{by: value})}
    # credits: read a random sample of the SMS listed
    listed = sorted(set().union(*(found for found in ids.values() if found)))
    picked = random.Random(seed).sample(listed, min(sample, len(listed)))
    credits: dict[int, float] = {}
    outside = 0
    start, end = period.bounds()
    for sms_id in picked:
        record = get(f"{base}/{sms_id}")
        credits[sms_id] = float(record.get("credits") or 0.0)
        created = record.get("creationDatetime")
        if created and not start <= datetime.fromisoformat(created) < end:
            outside += 1
    worker = {row.value: row for row in rows}
    checked = []
    for value, found in ids.items():
        row = worker.get(value, UsageRow(value))
        read_all = found is not None and all(i in credits for i in found)
        checked.append(
            CheckedRow(
                value=value,
                worker_sms=row.sms,
                worker_credits=row.credits,
                ovh_sms=None if found is None else len(found),
                ovh_credits=sum(credits[i] for i in found) if found is not None and read_all else None,
            )
        )
    checked.sort(key=lambda r: (-r.worker_credits, r.value is None, r.value or ""))
    return Check(checked, len(in_period), sum(row.sms for row in rows), len(picked), outside)
