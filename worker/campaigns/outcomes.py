"""Rows' results of a bulk campaign, without one OVH call per row where OVH tells more at once.

OVH answers a bulk jobs call without SMS ids. A row's result (a ``SendResult`` under the row's
request id, ``campaign-<id>/<line>``, as in requests mode) comes from, in this order:

1. **delivery callbacks set on the account** (``sms-worker callbacks setup``): they carry the
   SMS id and its ``receiver``; ``sms-worker inbound`` maps an id it does not know to the row of
   a tracked bulk campaign holding that receiver (``map_callback``): no OVH call at all;
2. **tag listings**: ``GET /sms/{sn}[/users/{login}]/outgoing?tag=<tag>`` (one call per look)
   gives every SMS id of the campaign; ids not mapped yet are read one by one
   (``GET .../outgoing/{id}``: receiver, credits), at most ``LOOKUPS_PER_LOOK`` per look, in the
   background lane of the rate limiter. This per-row read cannot be avoided where no callback
   names the receiver: pull mode, and API users' callbacks (``id``, ``ptt``... no receiver);
   it is bounded by the budget, and spread over looks ``LOOK_EVERY_S`` apart;
3. **deadline**: a row of a sent document with no SMS in OVH's records ``reconcile_deadline_s``
   after its document was sent ends ``unknown``.

A row ``sent`` becomes ``delivered``/``failed`` through the usual ``DeliveryReport`` events (its
SMS is mapped like any other, ``keys.sms``). What bulk mode cannot tell per row: which rows OVH
refused in the document (it reports no ``invalidReceivers`` in this mode), nor its credits
before the SMS show in its records.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypedDict

import redis

from contracts.models import ErrorInfo, ReceiverOutcome, SendResult
from contracts.redis_connection import text
from contracts.wire import RESULT_ACTOR_NAME
from worker.campaigns.rows import request_id
from worker.store import keys, scripts

#: SMS records read at most per look at a campaign's tag listing (the per-row bound).
LOOKUPS_PER_LOOK = 50
#: Seconds between two looks at one campaign's tag listing.
LOOK_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """What became of one row: ``status`` a SendResult status (``sent``, ``failed``, ``unknown``,
    ``cancelled``); ``estimate`` the credits reserved for it (released here)."""

    line: int
    receiver: str
    status: str
    estimate: float = 0.0
    ovh_id: int | None = None
    credits: float = 0.0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    """A bulk campaign as registered (``keys.bulk_campaign``)."""

    campaign_id: str
    state: str
    service: str
    login: str | None
    lane: str
    tag: str
    body: dict[str, Any]
    reply_to: str
    documents: int
    rows: int
    commercial: bool
    created_at: float
    fields: dict[str, str]

    @classmethod
    def read(cls, client: redis.Redis, campaign_id: str) -> CampaignRecord | None:
        raw = {text(k): text(v) for k, v in client.hgetall(keys.bulk_campaign(campaign_id)).items()}
        if "service" not in raw:
            return None
        return cls(
            campaign_id=campaign_id,
            state=raw.get("state", "running"),
            service=raw["service"],
            login=raw.get("login") or None,
            lane=raw["lane"],
            tag=raw["tag"],
            body=json.loads(raw["body"]),
            reply_to=raw["reply_to"],
            documents=int(raw.get("documents") or 0),
            rows=int(raw.get("rows") or 0),
            commercial=raw.get("commercial") == "1",
            created_at=float(raw.get("created_at") or 0.0),
            fields=raw,
        )

    def count(self, name: str) -> int:
        return int(float(self.fields.get(name) or 0))

    @property
    def jobs_path(self) -> str:
        base = f"/sms/{self.service}"
        return f"{base}/jobs" if self.login is None else f"{base}/users/{self.login}/jobs"

    @property
    def outgoing_path(self) -> str:
        base = f"/sms/{self.service}"
        return f"{base}/outgoing" if self.login is None else f"{base}/users/{self.login}/outgoing"


class BulkRowsKeys(TypedDict):
    campaign: str
    stats: str
    quota: str
    seen: str
    tag_stats: str


class BulkRowsDocument(TypedDict):
    result_ttl_s: int
    queue_cap: int
    result_actor: str
    tracking_ttl_s: int
    stats_ttl_s: int
    has_quota: bool
    service: str
    tag: str
    rows: list[dict[str, Any]]  # see lua/bulk_rows.lua


class _BulkRows(scripts.Script[BulkRowsKeys, BulkRowsDocument, int]):
    """The number of results published."""

    NAME = "bulk_rows"
    PRELUDE = scripts.CAMPAIGN_PRELUDE
    Keys = BulkRowsKeys

    def reply(self, raw: Any) -> int:
        return int(raw)


class RowResults:
    """Publishes rows' results, each once (``lua/bulk_rows.lua``)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        result_ttl_s: int,
        queue_cap: int,
        tracking_ttl_s: int,
        stats_ttl_s: int,
    ) -> None:
        self.redis = client
        self.result_ttl_s = result_ttl_s
        self.queue_cap = queue_cap
        self.tracking_ttl_s = tracking_ttl_s
        self.stats_ttl_s = stats_ttl_s
        self._script = _BulkRows(client)

    def publish(self, campaign: CampaignRecord, outcomes: Iterable[RowOutcome]) -> int:
        """Publish the result of each row that has none yet; how many were published."""
        refs = self._script.refs()
        now = time.time()
        rows = []
        for o in outcomes:
            rid = request_id(campaign.campaign_id, o.line)
            error = None
            if o.status != "sent":
                code = {"cancelled": "campaign_cancelled", "unknown": "outcome_unknown"}.get(o.status, "ovh_error")
                error = ErrorInfo(code=code, message=o.reason or o.status)
            outcome_status = {"sent": "sent", "failed": "failed"}.get(o.status, "unknown")
            if o.status == "cancelled":
                outcome_status = "failed"
            result = SendResult(
                request_id=rid,
                status=o.status,  # type: ignore[arg-type]
                service_name=campaign.service,
                user=campaign.login,
                receivers=[
                    ReceiverOutcome(receiver=o.receiver, status=outcome_status, ovh_id=o.ovh_id, reason=o.reason)  # type: ignore[arg-type]
                ],
                credits=o.credits,
                error=error,
                tag=campaign.tag,
                metadata={"campaign": campaign.campaign_id, "line": o.line},
                accepted_at=campaign.created_at,
                deferred_until=float(campaign.fields["deferred_until"])
                if campaign.fields.get("deferred_until")
                else None,
                finished_at=now,
            )
            row: dict[str, Any] = {
                "id": rid,
                "result": refs(keys.result(rid)),
                "ready": refs(keys.result_ready(rid)),
                "q": refs(keys.queue(campaign.reply_to)),
                "msgs": refs(keys.queue_messages(campaign.reply_to)),
                "queue": campaign.reply_to,
                "status": o.status,
                "payload": result.model_dump_json(exclude_none=True),
                "estimate": o.estimate,
                "credits": o.credits,
            }
            if o.ovh_id is not None:
                row["ovh_id"] = o.ovh_id
                row["sms"] = refs(keys.sms(o.ovh_id))
                row["tracking"] = {
                    "request_id": rid,
                    "receiver": o.receiver,
                    "reply_to": campaign.reply_to,
                    "tag": campaign.tag,
                    "service": campaign.service,
                    **({"login": campaign.login} if campaign.login else {}),
                    "call_id": f"bulk.{campaign.campaign_id}",
                    "sent_at": round(now, 3),
                }
            rows.append(row)
        if not rows:
            return 0
        document: BulkRowsDocument = {
            "result_ttl_s": self.result_ttl_s,
            "queue_cap": self.queue_cap,
            "result_actor": RESULT_ACTOR_NAME,
            "tracking_ttl_s": self.tracking_ttl_s,
            "stats_ttl_s": self.stats_ttl_s,
            "has_quota": campaign.fields.get("quota") == "1",
            "service": campaign.service,
            "tag": campaign.tag,
            "rows": rows,
        }
        fixed: BulkRowsKeys = {
            "campaign": keys.bulk_campaign(campaign.campaign_id),
            "stats": keys.STATS,
            "quota": keys.quota(campaign.service, campaign.login) if campaign.login else keys.STATS,
            "seen": keys.bulk_seen(campaign.campaign_id),
            "tag_stats": keys.campaign_stats(campaign.service, campaign.tag),
        }
        return self._script(fixed, document, refs)


def campaign_rows(client: redis.Redis, campaign_id: str) -> list[tuple[int, str, int, float]]:
    """``(line, receiver, document, estimate)`` of every row of the campaign's documents."""
    rows = []
    for field, value in client.hscan_iter(keys.bulk_rows(campaign_id), count=1000):
        receiver, number, estimate = text(value).split("|")
        rows.append((int(field), receiver, int(number), float(estimate)))
    rows.sort()
    return rows


def row_of(client: Any, campaign_id: str, receiver: str) -> tuple[int, str, float] | None:
    """``(line, receiver, estimate)`` of the campaign's row for ``receiver`` (E.164, or OVH's ``0033``)."""
    if receiver.startswith("00"):
        receiver = "+" + receiver[2:]
    elif receiver and not receiver.startswith("+"):
        receiver = "+" + receiver
    line = client.hget(keys.campaign_numbers(campaign_id), receiver)
    if line is None:
        return None
    value = client.hget(keys.bulk_rows(campaign_id), int(line))
    if value is None:
        return None
    _, _, estimate = text(value).split("|")
    return int(line), receiver, float(estimate)
