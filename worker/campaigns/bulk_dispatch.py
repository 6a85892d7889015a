"""The bulk dispatcher: a thread of ``sms-worker run`` sending bulk campaigns' documents.

Each round, in this order (one Redis look each when there is nothing to do):

1. **sweep**: bulk attempts of a worker whose lease expired are taken over (claimed ones due
   again, calling ones ambiguous), as for any attempt;
2. **reconcile** one ambiguous document from OVH's records (``worker.attempts.bulk``): an SMS
   of the tag to one of its first receivers, or a pending job to one, proves the call was
   carried out; none after the grace, and it is due again;
3. **send** one due document of a running campaign: quiet hours checked first (a commercial
   document due in the window is moved to the next allowed time, no slot taken), then a
   rate-limit slot of the campaign's lane (below ``high``: a one-time code still gets the next
   slot), the claim, and one ``POST .../jobs`` with ``receiversDocumentUrl``, retried like any
   call (a try that surely did not reach OVH goes back to claimed), settled from the answer;
4. **track** one campaign's rows (``worker.campaigns.outcomes``).

Before each document's call its campaign's circuit breaker is checked (``control.Breaker``).

Rows whose document OVH refused (a permanent error) end ``failed`` with OVH's message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from contracts.redis_connection import text
from worker.attempts.bulk import BulkAttempt, BulkAttempts, DocumentRef
from worker.attempts.lease import Lease
from worker.attempts.lifecycle import Owner
from worker.campaigns.control import Breaker
from worker.campaigns.outcomes import (
    LOOK_EVERY_S,
    LOOKUPS_PER_LOOK,
    CampaignRecord,
    RowOutcome,
    RowResults,
    campaign_rows,
    row_of,
)
from worker.errors import AmbiguousError, GatewayError, PermanentError, RetryableError
from worker.ovhcloud.background_calls import BackgroundCalls
from worker.ovhcloud.gateway import OvhGateway
from worker.ovhcloud.jobs import DocumentJobCall, SendingReport
from worker.ovhcloud.rate_limit import RateLimiter
from worker.quiet_hours import QuietHours
from worker.retries import REDIS_OUTAGE, call_with_retries, until_redis_answers
from worker.settings import Settings
from worker.store import keys

log = logging.getLogger(__name__)

#: Longest the loop sleeps with nothing to do (seconds): also how soon a resume is noticed.
IDLE_S = 1.0
#: Receivers of an ambiguous document looked up in OVH's records (each one GET).
PROOF_RECEIVERS = 3
#: Due documents looked at per round to find one of a running campaign.
DUE_SCAN = 50


class BulkDispatcher:
    """Sends bulk documents; ``run`` is the body of its thread (one per worker process)."""

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        attempts: BulkAttempts,
        gateway: OvhGateway,
        limiter: RateLimiter,
        lease: Lease,
        calls: BackgroundCalls,
        results: RowResults,
        *,
        quiet: QuietHours | None = None,
        on_breaker: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.redis = client
        self.attempts = attempts
        self.gateway = gateway
        self.limiter = limiter
        self.lease = lease
        self.calls = calls
        self.results = results
        self.quiet = quiet or settings.quiet_hours()
        self.breaker = Breaker(settings.breaker_threshold, settings.breaker_window_s, settings.breaker_min_outcomes)
        self.on_breaker = on_breaker
        self.clock = clock  # wall clock for quiet hours (a seam for tests)
        self.jobs_calls = 0  # bulk jobs calls made (tests, benchmarks)
        self.lookups = 0  # OVH reads for tracking and reconciliation
        self._stop = threading.Event()
        self._last_sweep = 0.0

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        while not stop.is_set():
            try:
                if not self.run_once():
                    stop.wait(IDLE_S)
            except REDIS_OUTAGE as exc:
                log.warning("bulk dispatcher: Redis does not answer (%s); retrying in 1 s", exc)
                stop.wait(1.0)
            except Exception:
                log.exception("bulk dispatcher error; going on in 1 s")
                stop.wait(1.0)

    def run_once(self) -> bool:
        """One round; ``True`` when it did something (the loop goes on at once)."""
        owner = self.lease.owner()
        if owner is None:
            return False
        if time.monotonic() - self._last_sweep >= self.lease.refresh_every_s:
            self._last_sweep = time.monotonic()
            for ref, what in self.attempts.sweep("its worker's lease expired during the call"):
                log.warning("bulk document %s taken over: %s", ref.member, what)
        busy = self.reconcile_one()
        busy = self.send_one(owner) or busy
        return self.track_one() or busy

    def _redis_ms(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # -- sending ----------------------------------------------------------------------------------

    def send_one(self, owner: Owner) -> bool:
        now_ms = self._redis_ms()
        due: list[bytes] = self.redis.zrangebyscore(keys.BULK_DUE, "-inf", now_ms, start=0, num=DUE_SCAN)  # type: ignore[assignment]
        for member in due:
            ref = DocumentRef.parse(member)
            record = CampaignRecord.read(self.redis, ref.campaign_id)
            if record is None or record.state == "cancelled":
                self.redis.zrem(keys.BULK_DUE, member)
                continue
            if record.state != "running":
                continue  # paused: it waits, due, for a resume
            if self.breaker.check(self.redis, record, self.clock()):
                if self.on_breaker is not None:
                    self.on_breaker(record.campaign_id)
                continue  # paused by the breaker before this call
            if record.commercial:
                now = self.clock()
                held = self.quiet.held_until(datetime.fromtimestamp(now, UTC), commercial=True)
                if held is not None:  # due again then (in Redis' time base: now_ms is Redis')
                    held_ms = now_ms + int((held.timestamp() - now) * 1000)
                    self.redis.zadd(keys.BULK_DUE, {member: held_ms}, xx=True)
                    self.redis.hset(keys.bulk_campaign(ref.campaign_id), "deferred_until", held.timestamp())
                    log.info("bulk document %s held for the quiet hours until %s", ref.member, held.isoformat())
                    continue
            if not self.limiter.acquire(record.lane, timeout_s=30.0, stop=self._stop):
                return False
            claimed = self.attempts.claim(owner, ref)
            if claimed not in ("ok", "same"):
                self.limiter.release()
                continue
            self._send(owner, ref, record)
            return True
        return False

    def _url(self, record: CampaignRecord, ref: DocumentRef) -> str:
        secret = record.fields.get(f"url:{ref.number}")
        base = (self.settings.inbound_public_url or "").rstrip("/")
        token = self.settings.inbound_token.get_secret_value() if self.settings.inbound_token else ""
        return f"{base}/ovh/{token}/receivers/{secret}.csv"

    def _send(self, owner: Owner, ref: DocumentRef, record: CampaignRecord) -> None:
        body: DocumentJobCall = {**record.body, "receiversDocumentUrl": self._url(record, ref)}  # type: ignore[typeddict-item]
        rows = int(record.fields.get(f"rows:{ref.number}") or 0)
        tries = 0

        def one_try() -> SendingReport:
            nonlocal tries
            tries += 1
            if tries > 1:
                if not self.limiter.acquire(record.lane, timeout_s=30.0, stop=self._stop):
                    raise _GiveBack("no rate-limit slot for the retry")
                if not self._step(lambda: self.attempts.call(owner, ref)):
                    raise _FencedOut()
            if not self.lease.valid(owner, margin_s=min(self.settings.ovh_connect_timeout_s, self.lease.lease_s / 2)):
                raise _GiveBack("the lease is about to expire")
            try:
                self.jobs_calls += 1
                report = self.gateway.send_job(record.service, record.login, body)
            except RetryableError as exc:
                if not self._step(lambda: self.attempts.uncall(owner, ref)):
                    raise _FencedOut() from exc
                if exc.status == 429:
                    self.limiter.on_rate_limited(exc.retry_after_s)
                raise
            self.limiter.on_success()
            return report

        try:
            report = call_with_retries(
                one_try,
                budget_s=self.settings.retry_budget_s[record.lane],
                attempts=self.settings.retry_attempts,
                max_wait_s=self.settings.retry_max_wait_s,
                stop=self._stop,
            )
        except (_GiveBack, RetryableError) as exc:
            if isinstance(exc, RetryableError) and not self._stop.is_set():
                self._failed(owner, ref, record, rows, exc)
            else:
                self._step(lambda: self.attempts.release(owner, ref))
        except _FencedOut:
            log.warning("bulk document %s: lease lost; the attempt is taken over elsewhere", ref.member)
        except PermanentError as exc:
            self._failed(owner, ref, record, rows, exc)
        except AmbiguousError as exc:
            why = exc.message
            log.warning("bulk document %s may have been sent (%s): reconciling with OVH", ref.member, why)
            self._step(lambda: self.attempts.ambiguous(owner, ref, why))
        except Exception as exc:
            why = f"internal error during the jobs call: {type(exc).__name__}"
            log.exception("bulk document %s: the call failed unexpectedly", ref.member)
            self._step(lambda: self.attempts.ambiguous(owner, ref, why))
        else:

            def record_and_settle() -> bool:
                self.attempts.answer(ref, report)
                return self.attempts.settle(ref, "sent", owner=owner, rows=rows, report=report)

            if self._step(record_and_settle):
                log.info(
                    "bulk document %s sent: %d rows, tag %s",
                    ref.member,
                    rows,
                    record.tag,
                    extra={"campaign_id": ref.campaign_id},
                )

    def _failed(self, owner: Owner, ref: DocumentRef, record: CampaignRecord, rows: int, exc: GatewayError) -> None:
        reason = f"OVH refused the campaign's document: {exc.message}"
        log.error("bulk document %s not sent: %s", ref.member, exc.message, extra={"campaign_id": ref.campaign_id})
        if self._step(lambda: self.attempts.settle(ref, "failed", owner=owner, rows=rows, reason=reason)):
            self._end_rows(record, {ref.number}, "failed", reason)

    def _end_rows(self, record: CampaignRecord, documents: set[int], status: str, reason: str) -> None:
        outcomes = [
            RowOutcome(line, receiver, status, estimate, reason=reason)
            for line, receiver, number, estimate in campaign_rows(self.redis, record.campaign_id)
            if number in documents
        ]
        self._step(lambda: self.results.publish(record, outcomes))

    def _step(self, step: Callable[[], Any]) -> Any:
        return until_redis_answers(step, outage_s=self.settings.redis_outage_s, what="a bulk attempt step")

    # -- reconciliation -------------------------------------------------------------------------------

    def reconcile_one(self) -> bool:
        now_ms = self._redis_ms()
        ref = self.attempts.next_ambiguous(now_ms)
        if ref is None:
            return False
        attempt = self.attempts.load(ref)
        record = CampaignRecord.read(self.redis, ref.campaign_id)
        if attempt is None or attempt.state != "ambiguous" or record is None:
            self.redis.zrem(keys.BULK_RECONCILE, ref.member)
            return True
        rows = int(record.fields.get(f"rows:{ref.number}") or 0)
        if attempt.report is not None:  # its owner had OVH's answer
            self.attempts.settle(ref, "sent", owner=None, rows=rows, report=attempt.report)
            return True
        try:
            proof = self._proof(record, ref, attempt)
        except GatewayError as exc:
            if now_ms >= attempt.deadline_ms:
                reason = f"OVH's records could not be read before the reconciliation deadline: {exc.message}"
                if self.attempts.settle(ref, "failed", owner=None, rows=rows, reason=reason):
                    self._end_rows(record, {ref.number}, "unknown", reason)
                return True
            self.attempts.look_again(ref, now_ms + 5000)
            return True
        if proof:
            log.info("bulk document %s reconciled: %s", ref.member, proof)
            self.attempts.settle(ref, "sent", owner=None, rows=rows, reason=proof)
        elif now_ms >= attempt.absent_after_ms:
            log.info("bulk document %s reconciled: not in OVH's records after the grace, due again", ref.member)
            self.attempts.absent(ref)
        else:
            self.attempts.look_again(ref, attempt.absent_after_ms)
        return True

    def _proof(self, record: CampaignRecord, ref: DocumentRef, attempt: BulkAttempt) -> str | None:
        """What in OVH's records shows the document's call was carried out, or ``None``."""
        receivers = [r for _, r, number, _ in campaign_rows(self.redis, record.campaign_id) if number == ref.number]
        for receiver in receivers[:PROOF_RECEIVERS]:
            self.lookups += 1
            if self.calls.get(record.outgoing_path, tag=record.tag, receiver=receiver):
                return "an SMS of the campaign's tag to one of its receivers"
        wanted = set(receivers)
        self.lookups += 1
        jobs = list(self.calls.get(record.jobs_path))
        for job_id in jobs[: self.settings.reconcile_max_lookups]:
            self.lookups += 1
            try:
                job = self.calls.get(f"{record.jobs_path}/{job_id}")
            except GatewayError:
                continue
            if str(job.get("receiver") or "") in wanted:
                return "a pending job to one of its receivers"
        return None

    # -- rows' outcomes and the breaker ---------------------------------------------------------------

    def track_one(self) -> bool:
        now_ms = self._redis_ms()
        found = self.redis.zrangebyscore(keys.BULK_TRACKED, "-inf", now_ms, start=0, num=1)
        if not found:
            return False
        campaign_id = text(found[0])
        record = CampaignRecord.read(self.redis, campaign_id)
        if record is None:
            self.redis.zrem(keys.BULK_TRACKED, campaign_id)
            return True
        self.redis.zadd(keys.BULK_TRACKED, {campaign_id: now_ms + int(LOOK_EVERY_S * 1000)})
        try:
            self.look(record)
        except GatewayError as exc:
            log.info("campaign %s: OVH's records not read (%s); looking again later", campaign_id, exc.message)
        done = sum(record.count(f"rows_{s}") for s in ("sent", "failed", "unknown", "cancelled"))
        if record.count("rows_submitted") and done >= record.count("rows_submitted"):
            self.redis.zrem(keys.BULK_TRACKED, campaign_id)
        return True

    def look(self, record: CampaignRecord) -> int:
        """One look at the campaign's tag listing: rows mapped to the SMS found; how many."""
        self.lookups += 1
        ids = [int(i) for i in self.calls.get(record.outgoing_path, tag=record.tag)]
        seen = keys.bulk_seen(record.campaign_id)
        with self.redis.pipeline(transaction=False) as pipe:
            for sms_id in ids:
                pipe.sismember(seen, str(sms_id))
            known = pipe.execute()
        new = [sms_id for sms_id, k in zip(ids, known, strict=True) if not k]
        outcomes = []
        for sms_id in new[:LOOKUPS_PER_LOOK]:
            if self.redis.exists(keys.sms(sms_id)):
                self.redis.sadd(seen, sms_id)  # mapped from a callback meanwhile
                continue
            self.lookups += 1
            sms = self.calls.get(f"{record.outgoing_path}/{sms_id}")
            row = row_of(self.redis, record.campaign_id, str(sms.get("receiver") or ""))
            if row is not None:
                line, receiver, estimate = row
                credits = float(sms.get("credits") or 0.0)
                outcomes.append(RowOutcome(line, receiver, "sent", estimate, ovh_id=sms_id, credits=credits))
        published = self.results.publish(record, outcomes) if outcomes else 0
        self._expire_rows(record)
        return published

    def _expire_rows(self, record: CampaignRecord) -> None:
        """Rows of documents sent longer than ``reconcile_deadline_s`` ago with no SMS found end ``unknown``."""
        deadline_s = self.settings.reconcile_deadline_s
        old = set()
        for number in range(record.documents):
            settled = self.redis.hmget(keys.bulk_attempt(record.campaign_id, number), "state", "settled_at")
            if settled[0] == b"sent" and settled[1] and time.time() - int(settled[1]) / 1000 > deadline_s:
                old.add(number)
        if old:
            reason = f"no SMS in OVH's records {deadline_s:g} s after its document was sent"
            self._end_rows(record, old, "unknown", reason)


class _GiveBack(Exception):
    """The call cannot go on now (stopping, no slot, lease too short): nothing was sent."""


class _FencedOut(Exception):
    """This worker no longer owns the attempt."""
