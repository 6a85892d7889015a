"""``sms-worker campaign send``: queue a contacts file row by row, resume, wait for the results.

The file is read ``CHUNK_ROWS`` rows at a time; for each chunk: build each row's request (or
reject it), give each number to the first row listing it (``campaign_numbers.lua``), read what
earlier runs left (a result; the worker's dedupe marker; or the campaign's own "queued" bit),
and publish only the rest, in one pipeline. Then the command waits for a result for every row it knows was
queued, reading result keys in batches. Memory stays flat: one chunk of rows, and one bit per
line for "waiting for its result" (125 KB per million rows).

Resuming is safe by construction: request ids are derived from the campaign and the line, and
the worker dedupes ids it has seen. It is also cheap: a row already answered, seen or queued
(``keys.campaign_queued``, one bit per line) is not published again, even while the worker is
still behind; the summary counts what earlier runs did.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypedDict

import redis

from contracts import SmsProducer
from contracts.wire import result_key
from worker.campaigns.contacts import Contact, ContactsFile
from worker.campaigns.pricing import Pricing
from worker.campaigns.progress import CampaignProgress
from worker.campaigns.rejects import RejectsFile
from worker.campaigns.rows import Campaign, Ready, Rejected, build, request_id
from worker.intake import mailmerge
from worker.store import keys, scripts

#: Rows read, checked and published together by default (one Redis round trip each way).
CHUNK_ROWS = 500
#: Result keys read per MGET while waiting.
RESULTS_BATCH = 1000
#: Pause between two looks at the results when the last one found nothing new (seconds).
POLL_S = 0.5
#: The results count of rows answered so long ago that their result is no longer kept.
RESULT_EXPIRED = "result_expired"
#: How long a dry run's duplicate check lives in Redis if the run dies before deleting it (seconds).
DRY_RUN_TTL_S = 3600


class _NumbersKeys(TypedDict):
    numbers: str


class _NumbersDocument(TypedDict):
    ttl_s: int
    claims: list[tuple[str, int]]  # (E.164, line)


class _Numbers(scripts.Script[_NumbersKeys, _NumbersDocument, list[int]]):
    """For each claim, the line that holds the number (the claim's own when it came first)."""

    NAME = "campaign_numbers"
    Keys = _NumbersKeys

    def reply(self, raw: Any) -> list[int]:
        return [int(line) for line in raw]


class Lines:
    """A set of line numbers as a bitmap: one bit per line, whatever the file's size."""

    def __init__(self) -> None:
        self._bits = bytearray()
        self.count = 0

    def add(self, line: int) -> None:
        byte, bit = divmod(line, 8)
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), 4096)))
        if not self._bits[byte] >> bit & 1:
            self._bits[byte] |= 1 << bit
            self.count += 1

    def discard(self, line: int) -> None:
        byte, bit = divmod(line, 8)
        if byte < len(self._bits) and self._bits[byte] >> bit & 1:
            self._bits[byte] &= ~(1 << bit) & 0xFF
            self.count -= 1

    def __iter__(self) -> Iterator[int]:
        for byte, value in enumerate(self._bits):
            if value:
                for bit in range(8):
                    if value >> bit & 1:
                        yield byte * 8 + bit


@dataclass
class Summary:
    """What a run did, and what earlier runs of the same campaign did."""

    campaign_id: str
    tag: str
    dry_run: bool = False
    rows: int = 0  # data rows read
    queued: int = 0  # published by this run
    earlier: int = 0  # queued by an earlier run of the campaign
    rejected: int = 0  # refused before queueing (in the rejects file)
    results: Counter[str] = field(default_factory=Counter)  # by result status
    not_sent: int = 0  # results refused or failed (in the rejects file too)
    credits: float = 0.0  # OVH's, from the results
    parts: int = 0  # SMS parts of the rows sent or to send
    estimated_credits: float = 0.0  # parts x destination rate
    unknown_rates: list[str] = field(default_factory=list)
    waiting: int = 0  # queued rows without a result when the command stopped
    differed_period: int = 0  # minutes, for the first rows queued
    rejects_file: str | None = None
    elapsed_s: float = 0.0
    via: str = "requests"  # how the rows are sent: requests, or bulk (receivers documents)
    documents: int = 0  # bulk: receivers documents (one jobs call each)
    held_until: str | None = None  # bulk: commercial rows held for the quiet hours until then (ISO)
    example: dict[str, Any] | None = None  # the first sendable row: its line and its text as merged

    def as_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["results"] = dict(sorted(self.results.items()))
        data["credits"] = round(self.credits, 6)
        data["estimated_credits"] = round(self.estimated_credits, 6)
        data["elapsed_s"] = round(self.elapsed_s, 3)
        return data


def _bits(op: str, rows: list[Ready], value: int | None = None) -> list[Any]:
    """BITFIELD arguments reading or setting each row's bit (at offset ``line``): one command per chunk."""
    args: list[Any] = []
    for row in rows:
        args += [op, "u1", row.line] + ([] if value is None else [value])
    return args


class CampaignRun:
    """One run of ``campaign send`` over an open contacts file; ``summary`` is kept up to date,
    so an interrupted run can still say how far it got."""

    def __init__(
        self,
        campaign: Campaign,
        contacts: ContactsFile,
        *,
        client: redis.Redis,
        pricing: Pricing,
        rejects: RejectsFile,
        progress: CampaignProgress,
        numbers_ttl_s: int,
        dry_run: bool = False,
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        self.campaign = campaign
        self.chunk_rows = chunk_rows
        self.contacts = contacts
        self.redis = client
        self.pricing = pricing
        self.rejects = rejects
        self.progress = progress
        self.dry_run = dry_run
        self.numbers_ttl_s = DRY_RUN_TTL_S if dry_run else numbers_ttl_s
        scope = f"dry-run.{uuid.uuid4().hex}" if dry_run else campaign.campaign_id
        self.numbers_key = keys.campaign_numbers(scope)
        self.queued_key = keys.campaign_queued(campaign.campaign_id)
        self.producer = SmsProducer(client=client)
        self.summary = Summary(
            campaign.campaign_id,
            campaign.tag,
            dry_run=dry_run,
            rejects_file=str(rejects.path),
        )
        self.waiting = Lines()
        self._numbers = _Numbers(client)
        self._columns = {name: i for i, name in enumerate(contacts.header) if name}
        self._started = time.monotonic()

    # -- queueing -------------------------------------------------------------------------------

    def queue(self) -> Summary:
        """Read the whole file, queue what needs queueing; returns the summary so far."""
        self.progress.queueing(self.contacts.size)
        rows = iter(self.contacts)
        try:
            while chunk := list(islice(rows, self.chunk_rows)):
                self._chunk(chunk)
                s = self.summary
                self.progress.queued(self.contacts.bytes_read(), s.rows, s.queued + s.earlier, s.rejected)
        finally:
            if self.dry_run:
                self.redis.delete(self.numbers_key)
            self._finish()
        return self.summary

    def _chunk(self, chunk: list[Contact]) -> None:
        s = self.summary
        campaign = self.campaign.at(datetime.now(UTC))
        if not s.rows:
            s.differed_period = campaign.differed_period
        s.rows += len(chunk)
        fields = {contact.line: contact.fields for contact in chunk}
        ready: list[Ready] = []
        for contact in chunk:
            built = build(campaign, contact, number_index=self.contacts.number_index, columns=self._columns)
            if isinstance(built, Rejected):
                self._reject(built.line, fields[built.line], built.reason)
            else:
                ready.append(built)
        if not ready:
            return
        claims = [(r.receiver, r.line) for r in ready]
        owners = self._numbers({"numbers": self.numbers_key}, {"ttl_s": self.numbers_ttl_s, "claims": claims})
        unique = []
        for row, owner in zip(ready, owners, strict=True):
            if owner != row.line:
                self._reject(row.line, fields[row.line], f"{row.receiver} is already on line {owner}")
            else:
                unique.append(row)
        if s.example is None and unique:
            first = unique[0].request
            values = (first.variables or {}).get(first.receivers[0])
            s.example = {"line": unique[0].line, "text": mailmerge.render(first.message, values)}
        for row in unique:
            s.parts += row.parts
            rate = self.pricing.rate(row.country)
            s.estimated_credits += row.parts * (rate or 0.0)
        if self.dry_run:
            return
        self._queue_rows(unique, fields)

    def _queue_rows(self, unique: list[Ready], fields: dict[int, tuple[str, ...]]) -> None:
        """Queue the chunk's rows to send (requests mode: one request each, unless an earlier run did)."""
        s = self.summary
        publish = self._earlier(unique, fields)
        self.producer.publish(row.request for row in publish)
        if publish:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.execute_command("BITFIELD", self.queued_key, *_bits("SET", publish, 1))
                pipe.expire(self.queued_key, self.numbers_ttl_s)
                pipe.execute()
        s.queued += len(publish)
        for row in publish:
            self.waiting.add(row.line)

    def _earlier(self, rows: list[Ready], fields: dict[int, tuple[str, ...]]) -> list[Ready]:
        """Count what earlier runs did for ``rows``; return the rows still to publish."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.mget([result_key(row.request.request_id) for row in rows])
            pipe.mget([keys.seen(row.request.request_id) for row in rows])
            pipe.execute_command("BITFIELD", self.queued_key, *_bits("GET", rows))
            results, seens, queueds = pipe.execute()
        publish, accepted = [], []
        for row, result, seen, queued in zip(rows, results, seens, queueds, strict=True):
            if result is not None:
                self.summary.earlier += 1
                self._result(row.line, result, fields[row.line])
            elif seen:
                self.summary.earlier += 1
                accepted.append(row)
            elif queued:
                self.summary.earlier += 1
                self.waiting.add(row.line)  # queued already, not accepted yet
            else:
                publish.append(row)
        if accepted:
            # Accepted and no result: in flight while the worker holds the request, else finished
            # so long ago that its result is no longer kept (SMS_WORKER_RESULT_TTL_S).
            with self.redis.pipeline(transaction=False) as pipe:
                for row in accepted:
                    pipe.exists(keys.request(row.request.request_id))
                in_flight = pipe.execute()
            for row, flying in zip(accepted, in_flight, strict=True):
                if flying:
                    self.waiting.add(row.line)
                else:
                    self.summary.results[RESULT_EXPIRED] += 1
        return publish

    def _reject(self, line: int, fields: tuple[str, ...] | None, reason: str, *, number: str = "") -> None:
        self.summary.rejected += 1
        self.rejects.add(line, fields, reason, number=number)

    def _result(self, line: int, raw: bytes | str, fields: tuple[str, ...] | None = None) -> None:
        result = json.loads(raw)
        status = result.get("status", "unknown")
        s = self.summary
        s.results[status] += 1
        s.credits += float(result.get("credits") or 0.0)
        if status in ("failed", "rejected"):
            s.not_sent += 1
            outcome = (result.get("receivers") or [{}])[0]
            reason = (result.get("error") or {}).get("message") or outcome.get("reason") or status
            self.rejects.add(line, fields, f"{status}: {reason}", number=outcome.get("receiver", ""))

    # -- waiting for results ----------------------------------------------------------------------

    def wait(self, timeout_s: float | None = None) -> Summary:
        """Wait until every queued row has a result (or ``timeout_s`` passed); returns the summary."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        total = self.waiting.count + sum(self.summary.results.values())
        self.progress.results(total)
        try:
            while self.waiting.count:
                started = time.monotonic()
                self._look()
                self._answered()
                if not self.waiting.count or (deadline is not None and time.monotonic() >= deadline):
                    break
                # Rest at least as long as a look took: a million rows waiting cost Redis and this
                # machine at most half their time, however slowly results come.
                time.sleep(max(POLL_S, time.monotonic() - started))
        finally:
            self._finish()
        return self.summary

    def _look(self) -> int:
        """Read the results of the rows waiting; how many were found."""
        found = 0
        lines = iter(self.waiting)  # the bitmap's size never changes while read: discarding is safe
        while batch := list(islice(lines, RESULTS_BATCH)):
            raws = self.redis.mget([result_key(request_id(self.campaign.campaign_id, line)) for line in batch])
            for line, raw in zip(batch, raws, strict=True):
                if raw is not None:
                    self.waiting.discard(line)
                    self._result(line, raw)
                    found += 1
        return found

    def _answered(self) -> None:
        s = self.summary
        done = sum(s.results.values())
        self.progress.answered(done, s.results["sent"] + s.results["partial"], s.not_sent)

    def _finish(self) -> None:
        s = self.summary
        s.waiting = self.waiting.count
        s.unknown_rates = self.pricing.unknown()
        s.elapsed_s = time.monotonic() - self._started
        s.rejects_file = str(self.rejects.path) if self.rejects.count else None
