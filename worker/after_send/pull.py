"""Pull mode: for users who cannot expose an endpoint, ``sms-worker run`` asks OVH instead.

- **Receipts.** While a poller runs it keeps ``keys.PULL`` alive, and the settle step then indexes
  every SMS it records in ``keys.RECEIPTS``, due ``pull_spacing_s`` after it was sent. The poller
  claims due ids (``claim_receipts.lua``: other replicas skip them meanwhile), reads
  ``GET /sms/{sn}/outgoing/{id}`` and publishes the report exactly as a callback would (same
  events, ``source: poll``). A final status ends the SMS's polling; otherwise its next poll waits
  twice as long as the last (at most ``MAX_SPACING_S``), up to ``pull_max_polls`` polls.
- **Incoming.** Every ``pull_incoming_s``, one replica reads ``GET /sms/{sn}/incoming`` since
  its last read (minus ``INCOMING_OVERLAP_S``), and ``GET .../incoming/{id}`` for the ids not
  published yet; each is published as a callback's reply would be (STOPs opt out).
- **Budget.** Every OVH call takes a slot of the rate limiter's background lane, and all pollers
  together make at most ``pull_calls_per_min`` calls a minute (``keys.pull_budget``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypedDict

import redis

from contracts.redis_connection import text
from worker.after_send.events import InvalidNumber, Receipt, Reply
from worker.after_send.publish import Publisher
from worker.after_send.receipts import classify, parse_date
from worker.errors import GatewayError, PermanentError
from worker.ovhcloud.background_calls import BackgroundCalls, take_lease
from worker.settings import Settings
from worker.store import keys, scripts

log = logging.getLogger(__name__)

assert keys.RECEIPTS == keys.PREFIX + "receipts" and keys.PULL == keys.PREFIX + "pull", "settle.lua spells them"

#: Longest wait between two polls of one SMS's receipt (seconds).
MAX_SPACING_S = 3600.0
#: SMS claimed per round, and how long other pollers leave them alone meanwhile (seconds).
BATCH = 50
CLAIM_LEASE_S = 120.0
#: How long ``keys.PULL`` outlives the last round (seconds): settle stops indexing soon after
#: pull mode stops.
PULL_MARKER_TTL_S = 120
#: ``keys.RECEIPTS``' TTL, renewed each round (seconds).
RECEIPTS_TTL_S = 86_400
#: Idle pause between rounds (seconds).
IDLE_S = 1.0
#: How far back each read of incoming SMS goes before the last one (seconds): OVH's creation
#: times and ours differ, and an SMS may appear late.
INCOMING_OVERLAP_S = 300.0
#: ``keys.incoming_cursor``'s TTL (seconds).
CURSOR_TTL_S = 7 * 86_400


class _ClaimKeys(TypedDict):
    receipts: str  # the receipts index (keys.RECEIPTS)


class _ClaimDocument(TypedDict):
    now_ms: int
    lease_ms: int
    limit: int


class _ClaimReceipts(scripts.Script[_ClaimKeys, _ClaimDocument, list[int]]):
    """The OVH ids claimed."""

    NAME = "claim_receipts"
    Keys = _ClaimKeys

    def reply(self, raw: Any) -> list[int]:
        return [int(ovh_id) for ovh_id in raw]


def _spend(client: redis.Redis, budget_per_min: int) -> bool:
    """Take one call from this minute's budget, shared by every poller; False when spent."""
    minute = int(time.time() // 60)
    with client.pipeline(transaction=False) as pipe:
        pipe.incr(keys.pull_budget(minute))
        pipe.expire(keys.pull_budget(minute), 120)
        spent, _ = pipe.execute()
    return int(spent) <= budget_per_min


class ReceiptPoller:
    def __init__(self, settings: Settings, client: redis.Redis, calls: BackgroundCalls, publisher: Publisher) -> None:
        self.settings = settings
        self.redis = client
        self.calls = calls
        self.publisher = publisher
        self._claim = _ClaimReceipts(client)
        self.polls = 0

    def run_once(self) -> float:
        """One round; the pause before the next (seconds)."""
        now = time.time()
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.PULL, "first_poll_delay_ms", int(self.settings.pull_spacing_s * 1000))
            pipe.expire(keys.PULL, PULL_MARKER_TTL_S)
            pipe.expire(keys.RECEIPTS, RECEIPTS_TTL_S)
            pipe.execute()
        claimed = self._claim(
            {"receipts": keys.RECEIPTS},
            {"now_ms": int(now * 1000), "lease_ms": int(CLAIM_LEASE_S * 1000), "limit": BATCH},
        )
        for n, ovh_id in enumerate(claimed):
            if not _spend(self.redis, self.settings.pull_calls_per_min):
                # Out of budget: the rest waits for the next minute.
                next_minute_ms = (int(time.time() // 60) + 1) * 60_000
                self.redis.zadd(keys.RECEIPTS, {str(i): next_minute_ms for i in claimed[n:]}, xx=True)
                return IDLE_S
            self._poll(ovh_id)
        return 0.0 if len(claimed) == BATCH else IDLE_S

    def _poll(self, ovh_id: int) -> None:
        raw_service = self.redis.hget(keys.sms(ovh_id), "service")
        if raw_service is None:  # tracking expired: nothing to map a receipt to
            self.redis.zrem(keys.RECEIPTS, str(ovh_id))
            return
        spacing = self.settings.pull_spacing_s
        try:
            service = text(raw_service)
            outgoing = self.calls.get(f"/sms/{service}/outgoing/{ovh_id}")
        except PermanentError as exc:
            if exc.status != 404:
                raise
            outgoing = None  # not in outgoing yet (a differed SMS): ask again later
        except GatewayError as exc:
            log.warning("receipt of SMS %s not read: %s; trying again later", ovh_id, exc)
            self._next(ovh_id, spacing)
            return
        self.polls += 1
        if outgoing is None:
            self._next(ovh_id, spacing)
            return
        receipt = Receipt(
            ovh_id=ovh_id,
            ptt=outgoing.get("ptt"),
            dlr=outgoing.get("deliveryReceipt"),
            source="poll",
            reported_at=parse_date(outgoing.get("deliveredAt") or outgoing.get("sentAt")),
        )
        outcome, polls = self.publisher.receipt(receipt, count_poll=True)
        final = classify(receipt.ptt, receipt.dlr)[1]
        if final or outcome in ("unknown_id", "stale"):
            self.redis.zrem(keys.RECEIPTS, str(ovh_id))
        elif polls >= self.settings.pull_max_polls:
            self.redis.zrem(keys.RECEIPTS, str(ovh_id))
            log.info("SMS %s: no final receipt after %d polls; no longer polled", ovh_id, polls)
        else:
            self._next(ovh_id, min(spacing * 2**polls, MAX_SPACING_S))

    def _next(self, ovh_id: int, after_s: float) -> None:
        self.redis.zadd(keys.RECEIPTS, {str(ovh_id): int((time.time() + after_s) * 1000)}, xx=True)


class IncomingPoller:
    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        calls: BackgroundCalls,
        publisher: Publisher,
        services: Callable[[], list[str]],
    ) -> None:
        self.settings = settings
        self.redis = client
        self.calls = calls
        self.publisher = publisher
        self.services = services

    def run_once(self) -> None:
        for service in self.services():
            if take_lease(self.redis, "incoming", service, self.settings.pull_incoming_s * 0.9):
                self._read(service)

    def _read(self, service: str) -> None:
        if not _spend(self.redis, self.settings.pull_calls_per_min):
            return
        now = time.time()
        cursor = self.redis.get(keys.incoming_cursor(service))
        since = (float(cursor) if cursor else now - 2 * self.settings.pull_incoming_s) - INCOMING_OVERLAP_S
        start = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(since))
        ids = [str(i) for i in self.calls.get(f"/sms/{service}/incoming", **{"creationDatetime.from": start})]
        with self.redis.pipeline(transaction=False) as pipe:
            for incoming_id in ids:
                pipe.exists(keys.incoming(service, incoming_id))
            seen = pipe.execute()
        for incoming_id in [i for i, known in zip(ids, seen, strict=True) if not known]:
            if not _spend(self.redis, self.settings.pull_calls_per_min):
                return  # the cursor stays: the rest is read next time
            details = self.calls.get(f"/sms/{service}/incoming/{incoming_id}")
            reply = Reply(
                number=str(details.get("sender") or ""),
                via="reply",
                source="poll",
                service=service,
                incoming_id=incoming_id,
                message=str(details.get("message") or "")[:1600],  # the contract's bound
                tag=details.get("tag") or None,
                created_at=parse_date(details.get("creationDatetime")),
            )
            try:
                self.publisher.reply(reply)
            except InvalidNumber:
                log.info("incoming SMS %s on %s: the sender is not a phone number; skipped", incoming_id, service)
                self.redis.set(keys.incoming(service, incoming_id), 1, ex=self.settings.dedupe_ttl_s)
        self.redis.set(keys.incoming_cursor(service), repr(now), ex=CURSOR_TTL_S)
