"""A campaign's figures, from the worker's own per-tag counters (``worker.campaigns.stats``).

No OVH call is needed, whatever the campaign's size (the meanings of ptt codes are read once and
kept). Figures: requests by result status; SMS sent, refused (invalid numbers, failed calls),
unknown; delivered, failed (by ptt, with OVH's meaning and whether it is permanent), expired,
pending (sent, no final report yet); opt-outs (STOP replies); credits; delivery time p50, p90,
p99; sends per minute. Delivery times come from a histogram (``DELAY_EDGES_S``), so a
percentile is given as the upper edge of its bucket: "p90 <= 3 s". ``cross_check`` compares the
counts with OVH's own list (``GET /sms/{sn}/outgoing?tag=``) and a sample of its records.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.after_send.ptts import PttLookup
from worker.campaigns.stats import DELAY_EDGES_S, TagStats, bucket_upper_s

#: Percentiles of the delivery time reported.
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True, slots=True)
class Failure:
    ptt: str
    count: int
    description: str
    duration: str


@dataclass(frozen=True, slots=True)
class Report:
    service: str
    tag: str
    requests: dict[str, int]
    sent: int  # SMS OVH accepted
    invalid: int  # numbers OVH refused
    failed_calls: int  # SMS of calls OVH refused
    unknown: int  # SMS whose call's outcome stayed unknown
    delivered: int
    failed: int  # final report "failed"
    expired: int
    unknown_reports: int  # latest report "unknown"
    pending: int  # sent, no final report
    opt_outs: int
    credits: float
    failures: list[Failure]  # failed and expired SMS by ptt
    delivery_s: dict[str, float | None]  # "p50" -> upper edge (s); None: no delivery timed
    delivery_histogram: list[tuple[float, int]]  # (upper edge s, SMS) from the first to the last bucket used
    sends_per_minute: list[tuple[float, int]]  # (minute start, unix s; SMS sent)
    first_sent_at: float | None
    last_sent_at: float | None
    check: dict[str, Any] | None = field(default=None)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready; times in seconds, ``null`` for none (or, for a percentile, beyond the last edge)."""
        data = asdict(self)
        data["credits"] = round(self.credits, 6)
        data["delivery_s"] = {p: None if v is None or math.isinf(v) else v for p, v in self.delivery_s.items()}
        data["delivery_histogram"] = [
            {"upper_s": None if math.isinf(upper) else upper, "count": n} for upper, n in self.delivery_histogram
        ]
        data["sends_per_minute"] = [{"minute": _iso(at), "count": n} for at, n in self.sends_per_minute]
        data["first_sent_at"] = _iso(self.first_sent_at)
        data["last_sent_at"] = _iso(self.last_sent_at)
        return data

    def with_check(self, check: dict[str, Any]) -> Report:
        return Report(**{**{name: getattr(self, name) for name in self.__dataclass_fields__}, "check": check})


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def percentile_bucket(delays: dict[int, int], p: int) -> int | None:
    """The bucket holding the ``p``-th percentile (nearest rank) of the delivery times."""
    total = sum(delays.values())
    if not total:
        return None
    rank = max(1, -(-p * total // 100))
    seen = 0
    for bucket, count in sorted(delays.items()):
        seen += count
        if seen >= rank:
            return bucket
    return None


def _meaning(ptts: PttLookup, code: str) -> tuple[str, str]:
    """``(description, duration)`` of a ptt code as the campaign's statistics count it."""
    if not code.isdigit():
        return "no ptt in the delivery report", "unknown"
    info = ptts.describe(int(code))
    return info.description or "not a code OVH's guide lists", info.duration or "unknown"


def build(stats: TagStats, ptts: PttLookup) -> Report:
    dlr = stats.dlr
    sent = stats.receivers.get("sent", 0)
    final = sum(dlr.get(s, 0) for s in ("delivered", "failed", "expired", "unknown"))
    failures = [
        Failure(code, count, *_meaning(ptts, code))
        for code, count in sorted(stats.ptts.items(), key=lambda item: (-item[1], item[0]))
        if count
    ]
    delivery_s: dict[str, float | None] = {}
    for p in PERCENTILES:
        bucket = percentile_bucket(stats.delays, p)
        delivery_s[f"p{p}"] = None if bucket is None else bucket_upper_s(bucket)
    span = range(min(stats.delays), max(stats.delays) + 1) if stats.delays else range(0)
    histogram = [(bucket_upper_s(b), stats.delays.get(b, 0)) for b in span]  # empty buckets between: 0
    first_s = stats.first_ms / 1000 if stats.first_ms is not None else None
    series = [(first_s + minute * 60, n) for minute, n in stats.minutes.items()] if first_s is not None else []
    return Report(
        service=stats.service,
        tag=stats.tag,
        requests=dict(sorted(stats.requests.items())),
        sent=sent,
        invalid=stats.receivers.get("invalid", 0),
        failed_calls=stats.receivers.get("failed", 0),
        unknown=stats.receivers.get("unknown", 0),
        delivered=dlr.get("delivered", 0),
        failed=dlr.get("failed", 0),
        expired=dlr.get("expired", 0),
        unknown_reports=dlr.get("unknown", 0),
        pending=max(sent - final, 0),
        opt_outs=stats.opt_outs,
        credits=stats.credits,
        failures=failures,
        delivery_s=delivery_s,
        delivery_histogram=histogram,
        sends_per_minute=series,
        first_sent_at=first_s,
        last_sent_at=stats.last_ms / 1000 if stats.last_ms is not None else None,
    )


def cross_check(report: Report, fetch: Callable[..., Any], sample: int, *, seed: int | None = None) -> dict[str, Any]:
    """OVH's count of SMS with the tag, and the delivery receipts of ``sample`` of them picked at random.

    ``1 + sample`` OVH calls: ``GET /sms/{sn}/outgoing?tag=`` then ``GET .../outgoing/{id}`` each.
    """
    ids = list(fetch(f"/sms/{report.service}/outgoing", tag=report.tag))
    picked = random.Random(seed).sample(ids, min(sample, len(ids)))
    receipts = {"delivered": 0, "failed": 0, "pending": 0}
    for sms_id in picked:
        receipt = fetch(f"/sms/{report.service}/outgoing/{sms_id}").get("deliveryReceipt")
        receipts["delivered" if receipt == 1 else "failed" if receipt in (2, 16) else "pending"] += 1
    return {"ovh_sms": len(ids), "worker_sms": report.sent, "agree": len(ids) == report.sent, "sample": receipts}


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return f"> {DELAY_EDGES_S[-1]:g} s"
    return f"<= {value:g} s"


def _share(n: int, of: int) -> str:
    return f"{n:,}" if not of else f"{n:,} ({100 * n / of:.1f}%)"


def table_rows(report: Report) -> list[tuple[str, str]]:
    """The report as (figure, value) rows for a terminal table."""
    r = report
    requests = ", ".join(f"{n:,} {status}" for status, n in r.requests.items()) or "-"
    rows = [
        ("campaign", f"tag {r.tag!r} on {r.service}"),
        ("requests", requests),
        ("sent", f"{r.sent:,} SMS"),
        ("not sent", f"{r.invalid:,} invalid numbers, {r.failed_calls:,} refused calls, {r.unknown:,} unknown"),
        ("delivered", _share(r.delivered, r.sent)),
        ("failed", _share(r.failed, r.sent)),
    ]
    rows += [(f"  ptt {f.ptt}", f"{f.count:,}: {f.description} ({f.duration})") for f in r.failures]
    rows += [
        ("expired", _share(r.expired, r.sent)),
        ("unknown", _share(r.unknown_reports, r.sent)),
        ("pending", _share(r.pending, r.sent)),
        ("opt-outs", _share(r.opt_outs, r.sent)),
        ("credits", f"{round(r.credits, 6):g}"),
        ("delivery time", "  ".join(f"{p} {_seconds(v)}" for p, v in r.delivery_s.items())),
    ]
    if r.sends_per_minute:
        peak = max(n for _, n in r.sends_per_minute)
        minutes = max(1.0, ((r.last_sent_at or 0) - (r.first_sent_at or 0)) / 60)
        rows.append(("throughput", f"peak {peak:,} SMS/min, average {r.sent / minutes:,.0f} SMS/min"))
        rows.append(("sent from", f"{_iso(r.first_sent_at)} to {_iso(r.last_sent_at)}"))
    if r.check is not None:
        c, s = r.check, r.check["sample"]
        verdict = "agrees" if c["agree"] else "DIFFERS"
        rows.append(("OVH check", f"OVH lists {c['ovh_sms']:,} SMS with the tag ({verdict} with the worker)"))
        rows.append(("  sample", f"{s['delivered']} delivered, {s['failed']} failed, {s['pending']} pending"))
    return rows
