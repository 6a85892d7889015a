"""The worker's own per-tag campaign counters, so a report of a million SMS costs no OVH call.

One Redis hash per SMS account and tag (``keys.campaign_stats``; its fields are listed in
``worker/store/lua/_campaign.lua``), updated in three places, each idempotent:

- **settlement**: ``settle.lua`` calls ``campaign_settled`` in the same step that publishes the
  results, so every SMS and request is counted once (an attempt is settled at most once);
- **delivery reports**: ``CampaignStats.delivered(ovh_id, status, ...)``, or from another Lua
  script ``campaign_delivered(stats_key, sms_key, {status, ptt, sent_at, delivered_at, ttl_s})``.
  The SMS's counted status is kept on its tracking hash (``keys.sms``), so repeated and
  out-of-order reports count each SMS once and a final status is never replaced;
- **STOP replies**: ``CampaignStats.opted_out(service, tag)``, or ``campaign_opted_out(stats_key,
  ttl_s)`` in Lua; the caller counts each opt-out once.

The scripts that update them get ``_campaign.lua`` prepended (``worker.store.scripts.CAMPAIGN_PRELUDE``), so a
delivery-report script can call the Lua functions in its own atomic step, passing both keys in
``KEYS`` (``keys.sms(ovh_id)`` and ``keys.campaign_stats(service, tag)``, the tracking hash's
``service`` and ``tag``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

import redis

from contracts.redis_connection import text
from worker.store import keys, scripts

#: Upper edges of the delivery-time histogram's buckets, in seconds (``CAMPAIGN_DELAY_EDGES_S`` in
#: ``lua/_campaign.lua``; a test keeps them equal). Bucket ``n`` (from 1) counts deliveries that
#: took at most ``DELAY_EDGES_S[n - 1]`` seconds; bucket ``len + 1`` the longer ones.
DELAY_EDGES_S: tuple[float, ...] = (
    0.5, 1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700,
    3600, 5400, 7200, 10800, 14400, 21600, 43200, 86400, 172800, 259200, 604800,
)  # fmt: skip
#: Last bucket (minutes after the first send) of the sends-over-time series (``CAMPAIGN_MAX_MINUTE``).
MAX_MINUTE = 10080

DeliveryStatus = Literal["delivered", "failed", "expired", "unknown", "pending"]
#: Delivery statuses; the first three are final.
DLR_STATUSES: tuple[str, ...] = ("delivered", "failed", "expired", "unknown", "pending")
FINAL_STATUSES = frozenset({"delivered", "failed", "expired"})


class _DeliveryKeys(TypedDict):
    sms: str  # the SMS's tracking hash
    stats: str  # its campaign's statistics


class _DeliveryDocument(TypedDict):
    status: str
    ttl_s: int
    ptt: NotRequired[int]
    sent_at: NotRequired[float]  # unix s
    delivered_at: NotRequired[float]


class _Delivery(scripts.Script[_DeliveryKeys, _DeliveryDocument, bool]):
    """``True`` when a counter changed."""

    NAME = "campaign_delivery"
    PRELUDE = scripts.CAMPAIGN_PRELUDE
    Keys = _DeliveryKeys

    def reply(self, raw: Any) -> bool:
        return bool(raw)


class _OptOutKeys(TypedDict):
    stats: str


class _OptOutDocument(TypedDict):
    ttl_s: int


class _OptOut(scripts.Script[_OptOutKeys, _OptOutDocument, bool]):
    """``True`` when counted."""

    NAME = "campaign_opt_out"
    PRELUDE = scripts.CAMPAIGN_PRELUDE
    Keys = _OptOutKeys

    def reply(self, raw: Any) -> bool:
        return bool(raw)


@dataclass(frozen=True, slots=True)
class TagStats:
    """A tag's counters as Redis holds them (see ``lua/_campaign.lua``)."""

    service: str
    tag: str
    requests: dict[str, int] = field(default_factory=dict)  # by result status
    receivers: dict[str, int] = field(default_factory=dict)  # SMS by settlement outcome
    credits: float = 0.0
    first_ms: int | None = None
    last_ms: int | None = None
    minutes: dict[int, int] = field(default_factory=dict)  # minute after first_ms -> SMS sent
    dlr: dict[str, int] = field(default_factory=dict)  # SMS by latest delivery status
    ptts: dict[str, int] = field(default_factory=dict)  # failed or expired SMS by ptt code
    delays: dict[int, int] = field(default_factory=dict)  # bucket (1-based, see DELAY_EDGES_S) -> SMS
    delays_unknown: int = 0  # delivered SMS whose report lacked a time
    opt_outs: int = 0

    @classmethod
    def parse(cls, service: str, tag: str, raw: dict[str, str]) -> TagStats:
        groups: dict[str, dict[str, int]] = {"requests": {}, "receivers": {}, "dlr": {}, "ptt": {}}
        minutes: dict[int, int] = {}
        delays: dict[int, int] = {}
        delays_unknown = 0
        for name, value in raw.items():
            kind, _, what = name.partition(":")
            if kind in groups and what:
                groups[kind][what] = int(value)
            elif kind == "minute":
                minutes[int(what)] = int(value)
            elif kind == "delay" and what == "none":
                delays_unknown = int(value)
            elif kind == "delay":
                delays[int(what)] = int(value)
        return cls(
            service=service,
            tag=tag,
            requests=groups["requests"],
            receivers=groups["receivers"],
            credits=float(raw.get("credits") or 0.0),
            first_ms=int(raw["first_ms"]) if "first_ms" in raw else None,
            last_ms=int(raw["last_ms"]) if "last_ms" in raw else None,
            minutes=dict(sorted(minutes.items())),
            dlr=groups["dlr"],
            ptts=groups["ptt"],
            delays=dict(sorted(delays.items())),
            delays_unknown=delays_unknown,
            opt_outs=int(raw.get("opt_outs") or 0),
        )


def _unix(value: float | datetime | None) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else value


def delay_bucket(seconds: float) -> int:
    """The histogram bucket (from 1) of a delivery that took ``seconds`` (as ``lua/_campaign.lua``)."""
    for n, edge in enumerate(DELAY_EDGES_S, start=1):
        if seconds <= edge:
            return n
    return len(DELAY_EDGES_S) + 1


def bucket_upper_s(bucket: int) -> float:
    """The upper edge of a bucket, in seconds (``inf`` for the last one)."""
    return DELAY_EDGES_S[bucket - 1] if bucket <= len(DELAY_EDGES_S) else math.inf


class CampaignStats:
    """Reads a tag's counters; counts delivery reports and STOP replies into them.

    ``ttl_s`` is ``campaign_stats_ttl_s``: each write keeps the hash that long (0: nothing kept).
    """

    def __init__(self, client: redis.Redis, *, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self._delivery = _Delivery(client)
        self._opt_out = _OptOut(client)

    def delivered(
        self,
        ovh_id: int | str,
        status: DeliveryStatus,
        *,
        ptt: int | None = None,
        delivered_at: float | datetime | None = None,
        sent_at: float | datetime | None = None,
    ) -> bool:
        """Count one delivery report of the SMS OVH numbered ``ovh_id``; ``True`` if it changed a counter.

        ``status`` as the delivery report says it; ``ptt`` OVH's code (failures are grouped by
        it); ``delivered_at`` and ``sent_at`` (unix s or aware datetimes) time the delivery;
        ``sent_at`` defaults to when the worker settled the SMS. An SMS the worker did not send
        with a tag (or no longer tracks) counts nowhere.
        """
        if status not in DLR_STATUSES:
            raise ValueError(f"status must be one of {', '.join(DLR_STATUSES)}, not {status!r}")
        sms_key = keys.sms(ovh_id)
        service, tag = self.redis.hmget(sms_key, "service", "tag")
        if service is None or tag is None:
            return False
        document: _DeliveryDocument = {"status": status, "ttl_s": self.ttl_s}
        if ptt is not None:
            document["ptt"] = ptt
        if (sent := _unix(sent_at)) is not None:
            document["sent_at"] = sent
        if (delivered := _unix(delivered_at)) is not None:
            document["delivered_at"] = delivered
        stats_key = keys.campaign_stats(text(service), text(tag))
        return self._delivery({"sms": sms_key, "stats": stats_key}, document)

    def opted_out(self, service: str, tag: str) -> bool:
        """Count one STOP reply to an SMS of ``tag`` (call it once per opt-out); ``True`` if counted."""
        return self._opt_out({"stats": keys.campaign_stats(service, tag)}, {"ttl_s": self.ttl_s})

    def read(self, service: str, tag: str) -> TagStats | None:
        """The tag's counters, or ``None`` when the worker holds none (never sent, or expired)."""
        raw = {text(k): text(v) for k, v in self.redis.hgetall(keys.campaign_stats(service, tag)).items()}
        return TagStats.parse(service, tag, raw) if raw else None
