"""Pause, resume and cancel a bulk campaign; the circuit breaker that pauses one failing too much.

- **pause**: the campaign's state becomes ``paused``; a document is claimed only while its
  campaign is ``running`` (``worker/attempts/lua/bulk.lua`` checks it in the claim, after the
  rate-limit slot is granted), so no new jobs call leaves once the pause is written: at most
  the call already in flight, within one slot interval. Nothing else changes.
- **resume**: back to ``running``; waiting documents go at their due time (or now).
- **cancel**: the state becomes ``cancelled`` (no claim succeeds after that), documents not
  sent get a ``cancelled`` attempt (a re-run or a resume cannot send them), OVH's pending jobs
  of the campaign are deleted (``DELETE /sms/{sn}[/users/{login}]/jobs/{id}``: jobs held by a
  ``differedPeriod`` or by OVH), and every row not sent ends with a ``cancelled`` result.
  ``sms.Job`` has no tag: a pending job is the campaign's when its receiver is one of the
  campaign's numbers and it was created after the campaign started.
- **breaker**: the share of failed SMS among the campaign's final outcomes (rows failed, and
  delivery reports ``failed``/``expired`` of its tag) over a window of ``breaker_window_s``; at
  ``breaker_threshold`` or more, with at least ``breaker_min_outcomes`` outcomes in the window,
  the campaign is paused: a WARNING log line, the ``sms_worker_campaign_breaker_trips_total``
  metric, and ``paused_by: breaker`` on the campaign (``campaign status``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from contracts.redis_connection import text
from worker.attempts.bulk import DocumentRef
from worker.campaigns.outcomes import CampaignRecord, RowOutcome, RowResults, campaign_rows
from worker.errors import GatewayError, UsageError
from worker.store import keys

log = logging.getLogger(__name__)

#: Pending jobs read at most by one cancel (each is one GET): beyond, the cancel says so.
MAX_JOBS_READ = 2000


def find(client: redis.Redis, service: str, selector: str, *, by_tag: bool) -> CampaignRecord:
    """The bulk campaign named by its id, or by its tag on ``service``; ``UsageError`` if none."""
    if by_tag:
        found = client.get(keys.bulk_tag(service, selector))
        if found is None:
            raise UsageError(f"no bulk campaign with tag {selector!r} on {service}")
        campaign_id = text(found)
    else:
        campaign_id = selector.removeprefix("campaign-")
    record = CampaignRecord.read(client, campaign_id)
    if record is None:
        raise UsageError(f"no bulk campaign {campaign_id!r} (only bulk campaigns can be paused, resumed or cancelled)")
    return record


def pause(client: redis.Redis, record: CampaignRecord, *, by: str = "command") -> bool:
    """``running`` -> ``paused``; ``False`` when it was not running."""
    key = keys.bulk_campaign(record.campaign_id)
    with client.pipeline() as pipe:
        pipe.watch(key)
        if pipe.hget(key, "state") != b"running":
            return False
        pipe.multi()
        pipe.hset(key, mapping={"state": "paused", "paused_by": by, "paused_at": str(time.time())})
        pipe.execute()
    return True


def resume(client: redis.Redis, record: CampaignRecord) -> bool:
    """``paused`` -> ``running`` (the breaker's window starts afresh); ``False`` when not paused."""
    key = keys.bulk_campaign(record.campaign_id)
    with client.pipeline() as pipe:
        pipe.watch(key)
        if pipe.hget(key, "state") != b"paused":
            return False
        pipe.multi()
        pipe.hset(key, mapping={"state": "running", "paused_by": "", "window_failed": 0, "window_sent": 0})
        pipe.hdel(key, "window_started", "window_dlr_failed", "window_dlr_ok")
        pipe.execute()
    return True


@dataclass
class CancelReport:
    documents_stopped: int = 0  # documents that will never be sent
    jobs_deleted: int = 0  # OVH pending jobs deleted
    rows_cancelled: int = 0  # rows ended ``cancelled``
    jobs_left: int = 0  # pending jobs not read (more than MAX_JOBS_READ)


def cancel(
    client: redis.Redis,
    record: CampaignRecord,
    results: RowResults,
    calls: Any,
) -> CancelReport:
    """Cancel the campaign (see the module's docstring). ``calls``: rate-limited OVH calls
    (``BackgroundCalls``) for the pending jobs, or ``None`` to leave OVH alone."""
    report = CancelReport()
    key = keys.bulk_campaign(record.campaign_id)
    client.hset(key, mapping={"state": "cancelled", "cancelled_at": str(time.time())})
    stopped: list[int] = []
    for number in range(record.documents):
        ref = DocumentRef(record.campaign_id, number)
        attempt = keys.bulk_attempt(record.campaign_id, number)
        client.zrem(keys.BULK_DUE, ref.member)
        if client.hsetnx(attempt, "state", "cancelled"):
            client.expire(attempt, int(client.ttl(key)) if client.ttl(key) > 0 else 86_400)
            stopped.append(number)
    report.documents_stopped = len(stopped)
    deleted = _delete_pending_jobs(client, record, calls, report) if calls is not None else []
    documents, receivers = set(stopped), set(deleted)
    report.rows_cancelled = results.publish(
        record,
        (
            RowOutcome(line, receiver, "cancelled", estimate, reason="the campaign was cancelled")
            for line, receiver, number, estimate in campaign_rows(client, record.campaign_id)
            if number in documents or receiver in receivers
        ),
    )
    return report


def _delete_pending_jobs(client: redis.Redis, record: CampaignRecord, calls: Any, report: CancelReport) -> list[str]:
    """Delete OVH's pending jobs of the campaign; the receivers whose job was deleted."""
    jobs_path = record.jobs_path
    ids = list(calls.get(jobs_path))
    report.jobs_left = max(len(ids) - MAX_JOBS_READ, 0)
    numbers = keys.campaign_numbers(record.campaign_id)
    deleted = []
    for job_id in ids[:MAX_JOBS_READ]:
        try:
            job = calls.get(f"{jobs_path}/{job_id}")
        except GatewayError as exc:
            if exc.status == 404:
                continue  # sent meanwhile
            raise
        receiver = str(job.get("receiver") or "")
        if not receiver.startswith("+"):
            receiver = "+" + receiver.removeprefix("00")
        created = _when(job.get("creationDatetime"))
        if created is not None and created < record.created_at - 60:
            continue
        if not client.hexists(numbers, receiver):
            continue
        try:
            calls.delete(f"{jobs_path}/{job_id}")
        except GatewayError as exc:
            if exc.status != 404:
                raise
            continue
        deleted.append(receiver)
        report.jobs_deleted += 1
    return deleted


def _when(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


@dataclass
class Breaker:
    """The circuit breaker's rule (see the module's docstring)."""

    threshold: float
    window_s: float
    min_outcomes: int

    def check(self, client: redis.Redis, record: CampaignRecord, now_s: float) -> str | None:
        """Pause ``record`` if its failure share over the window passed the threshold; the reason, or ``None``."""
        if record.state != "running" or self.threshold >= 1.0:
            return None
        stats = client.hmget(
            keys.campaign_stats(record.service, record.tag), "dlr:failed", "dlr:expired", "dlr:delivered"
        )
        dlr_failed = sum(int(v or 0) for v in stats[:2])
        dlr_ok = int(stats[2] or 0)
        key = keys.bulk_campaign(record.campaign_id)
        started = float(record.fields.get("window_started") or 0)
        if not started or now_s - started >= self.window_s:
            client.hset(
                key,
                mapping={
                    "window_started": now_s,
                    "window_failed": 0,
                    "window_sent": 0,
                    "window_dlr_failed": dlr_failed,
                    "window_dlr_ok": dlr_ok,
                },
            )
            return None
        failed = record.count("window_failed") + dlr_failed - record.count("window_dlr_failed")
        ok = dlr_ok - record.count("window_dlr_ok")
        outcomes = failed + ok
        if outcomes < self.min_outcomes or failed / outcomes < self.threshold:
            return None
        reason = (
            f"{failed} of {outcomes} outcomes failed in the last {self.window_s:g} s "
            f"({failed / outcomes:.0%}, threshold {self.threshold:.0%})"
        )
        if pause(client, record, by="breaker"):
            client.hset(key, "breaker_reason", reason)
            log.warning(
                "campaign %s (tag %s) paused by the circuit breaker: %s; resume with sms-worker campaign resume",
                record.campaign_id,
                record.tag,
                reason,
                extra={"campaign_id": record.campaign_id},
            )
            return reason
        return None
