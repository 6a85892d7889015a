"""``campaign send --via bulk``: a contacts file as OVH receivers documents, one jobs call each.

The rows are checked as in requests mode (``rows.build``: number, variables, length; each
number once, ``campaign_numbers``), plus what OVH refuses in a document: a value outside the
GSM 03.38 alphabet, or holding ``;``, a quote or a line break. The rows that pass become OVH's
CSV (``number;<variable>;...``, UTF-8, the number in E.164), ``bulk_document_rows`` rows per
document, written to Redis with the campaign's record; the worker's bulk dispatcher
(``worker.campaigns.bulk_dispatch``) sends each document by one jobs call whose
``receiversDocumentUrl`` is ``<inbound public URL>/ovh/<inbound token>/receivers/<secret>.csv``:
the callbacks' token, plus a random secret per document that expires with it
(``bulk_document_ttl_s``). ``/me/document`` uploads are not supported: OVH documents them for
receivers slots, not for the jobs call, and a slot costs calls of its own (up to 9 slots).

Documents are cut from the file in its order, so a re-run builds the same documents: a
document that has an attempt (sent, in flight, failed, cancelled) is never written or sent
again. The campaign's credits (parts x rate per row) are reserved on its API user's quota
before any document is due, and settled row by row from OVH's records.

Commercial campaigns (``no_stop_clause`` false) due in the quiet hours are due at the next
allowed time (``worker.quiet_hours``): the summary says when they go.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from worker.accounting.credits import gsm_length
from worker.attempts.bulk import DocumentRef
from worker.campaigns.rows import Ready
from worker.campaigns.send import CampaignRun, Summary
from worker.errors import UsageError
from worker.store import keys

#: Characters a document's value may not hold (OVH's CSV has no documented quoting).
FORBIDDEN = frozenset(';"\r\n')
#: Seconds the command waits for its own document URL to answer.
URL_CHECK_TIMEOUT_S = 10.0


def value_problem(name: str, value: str) -> str | None:
    """Why OVH would refuse ``value`` in a receivers document, or ``None``."""
    if FORBIDDEN & set(value):
        return f"#{name}#: {value!r} holds ; a quote or a line break, which a receivers document cannot carry"
    if gsm_length(value) is None:
        return f"#{name}#: {value!r} has characters outside the GSM 03.38 alphabet, which OVH refuses in a document"
    return None


class BulkRun(CampaignRun):
    """``CampaignRun`` whose rows go into receivers documents instead of one request each."""

    def __init__(
        self, *args: Any, settings: Any, now: float | None = None, check_url: bool = True, **kwargs: Any
    ) -> None:
        """``check_url``: fetch the first document from the public URL before handing the
        documents over (off only where nothing is to be sent before the campaign is cancelled)."""
        super().__init__(*args, **kwargs)
        self.check_url = check_url
        self.settings = settings
        self.document_rows = settings.bulk_document_rows
        self.ttl_s = settings.bulk_document_ttl_s
        self.key = keys.bulk_campaign(self.campaign.campaign_id)
        self.variables = list(self.campaign.placeholders)
        self.service = self.campaign.service_name or settings.service_name
        self._rows: list[tuple[Ready, float]] = []
        self._number = 0
        self._reserved = 0.0  # credits this run reserved on the user's quota
        self._now = now if now is not None else time.time()
        self.summary.via = "bulk"

    # -- the campaign's record --------------------------------------------------------------------

    def open(self) -> None:
        """Write (or find) the campaign's record; refuse a campaign cancelled earlier."""
        if self.service is None:
            raise UsageError("no SMS account: pass --service or set SMS_WORKER_SERVICE_NAME")
        if not (self.settings.inbound_public_url and self.settings.inbound_token):
            raise UsageError(
                "bulk mode needs SMS_WORKER_INBOUND_PUBLIC_URL and SMS_WORKER_INBOUND_TOKEN: OVH fetches the "
                "receivers documents from sms-worker inbound (or send with --via requests)"
            )
        existing = self.redis.hmget(self.key, "state", "cancelled_at")
        if existing[0] == b"cancelled":
            when = datetime.fromtimestamp(float(existing[1] or 0), UTC).astimezone()
            raise UsageError(
                f"campaign {self.campaign.campaign_id} was cancelled on {when:%Y-%m-%d %H:%M} "
                "(sms-worker campaign cancel): nothing more is sent under this id; give another --campaign-id "
                "to send it again"
            )
        c = self.campaign
        body: dict[str, Any] = {
            "message": c.message,
            "priority": c.priority,
            "noStopClause": c.no_stop_clause,
            "tag": c.tag,
        }
        sender = c.sender or self.settings.sender
        if sender:
            body["sender"] = sender
        record: dict[Any, Any] = {
            "service": self.service,
            "login": c.user or "",
            "lane": c.priority,
            "tag": c.tag,
            "body": json.dumps(body, separators=(",", ":")),
            "reply_to": self.settings.results_queue,
            "commercial": "0" if c.no_stop_clause else "1",
        }
        with self.redis.pipeline() as pipe:
            pipe.hsetnx(self.key, "state", "running")
            pipe.hsetnx(self.key, "created_at", str(self._now))
            pipe.hset(self.key, mapping=record)
            pipe.expire(self.key, self.ttl_s)
            pipe.set(keys.bulk_tag(self.service, c.tag), c.campaign_id, ex=self.ttl_s)
            pipe.expire(keys.bulk_rows(c.campaign_id), self.ttl_s)
            pipe.execute()

    # -- rows into documents ----------------------------------------------------------------------

    def queue(self) -> Summary:
        if not self.dry_run:
            self.open()
        try:
            super().queue()
            if not self.dry_run:
                self._flush()
                self._register()
        except BaseException:
            self._release_reservations()
            raise
        return self.summary

    def _queue_rows(self, unique: list[Ready], fields: dict[int, tuple[str, ...]]) -> None:
        for row in unique:
            values = (row.request.variables or {}).get(row.receiver, {})
            problem = next((p for name in self.variables if (p := value_problem(name, values.get(name, "")))), None)
            if problem:
                self._reject(row.line, fields[row.line], problem)
                continue
            rate = self.pricing.rate(row.country)
            self._rows.append((row, row.parts * (rate or 0.0)))
            if len(self._rows) >= self.document_rows:
                self._flush()

    def _flush(self) -> None:
        """Write the document being filled (unless an attempt of it exists already)."""
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        number = self._number
        self._number += 1
        cid = self.campaign.campaign_id
        s = self.summary
        s.documents += 1
        if self.redis.exists(keys.bulk_attempt(cid, number)):
            s.earlier += len(rows)
        else:
            header = ";".join(["number", *self.variables])
            lines = [header]
            for row, _ in rows:
                values = (row.request.variables or {}).get(row.receiver, {})
                lines.append(";".join([row.receiver, *(values.get(name, "") for name in self.variables)]))
            text = "\n".join(lines) + "\n"
            secret = self.redis.hget(self.key, f"url:{number}")
            secret_text = secret.decode() if isinstance(secret, bytes) else secrets.token_hex(16)
            estimate = sum(e for _, e in rows)
            with self.redis.pipeline() as pipe:
                pipe.set(keys.bulk_document(cid, number), text, ex=self.ttl_s)
                pipe.set(keys.bulk_url(secret_text), DocumentRef(cid, number).member, ex=self.ttl_s)
                pipe.hset(keys.bulk_rows(cid), mapping={row.line: f"{row.receiver}|{number}|{e!r}" for row, e in rows})
                pipe.hset(self.key, mapping={f"url:{number}": secret_text, f"rows:{number}": len(rows)})
                pipe.hsetnx(self.key, f"estimate:{number}", repr(estimate))
                pipe.execute()
            self._reserve(number, estimate)
            s.queued += len(rows)
        self._waiting(rows)

    def _waiting(self, rows: list[tuple[Ready, float]]) -> None:
        """Rows with a result already (an earlier run) are counted; the rest are waited for."""
        from contracts.wire import result_key

        raws = self.redis.mget([result_key(row.request.request_id) for row, _ in rows])
        for (row, _), raw in zip(rows, raws, strict=True):
            if raw is not None:
                self._result(row.line, raw)
            else:
                self.waiting.add(row.line)

    def _reserve(self, number: int, estimate: float) -> None:
        """Reserve the document's credits on the campaign's API user's quota (once per document)."""
        login = self.campaign.user
        if login is None or self.service is None:
            return
        quota_key = keys.quota(self.service, login)
        if not self.redis.exists(quota_key):
            return  # the worker keeps no quota for this user: OVH's own is the only check
        self.redis.hset(self.key, "quota", "1")
        if not self.redis.hsetnx(self.key, f"reserved:{number}", "1"):
            return  # reserved by an earlier run
        reserved = float(self.redis.hincrbyfloat(quota_key, "reserved", estimate))
        self._reserved += estimate
        quota, spent = self.redis.hmget(quota_key, "quota", "spent")
        if quota is not None and float(quota) - reserved - float(spent or 0) < -1e-9:
            left = float(quota) - (reserved - estimate) - float(spent or 0)
            raise UsageError(
                f"the quota of user {login} cannot pay this campaign: its documents need more than the "
                f"{max(left, 0):g} credits left (nothing was sent)"
            )

    def _release_reservations(self) -> None:
        if self._reserved and self.campaign.user and self.service:
            self.redis.hincrbyfloat(keys.quota(self.service, self.campaign.user), "reserved", -self._reserved)
            for number in range(self._number):
                self.redis.hdel(self.key, f"reserved:{number}")
            self._reserved = 0.0

    # -- handing the documents to the worker ------------------------------------------------------

    def _register(self) -> None:
        cid = self.campaign.campaign_id
        self.redis.hset(
            self.key, mapping={"documents": self._number, "rows": self.summary.queued + self.summary.earlier}
        )
        if not self._number:
            return
        if self.check_url:
            self._check_url()
        due = self.campaign.start_at.timestamp() if self.campaign.start_at else self._now
        if not self.campaign.no_stop_clause:
            held = self.settings.quiet_hours().held_until(datetime.fromtimestamp(due, UTC), commercial=True)
            if held is not None:
                due = held.timestamp()
                self.redis.hset(self.key, "deferred_until", due)
                self.summary.held_until = held.isoformat(timespec="minutes")
        with self.redis.pipeline() as pipe:
            for number in range(self._number):
                pipe.exists(keys.bulk_attempt(cid, number))
            started = pipe.execute()
        due_ms = int(due * 1000)
        members = {DocumentRef(cid, n).member: due_ms for n, has in enumerate(started) if not has}
        if members:
            self.redis.zadd(keys.BULK_DUE, members, nx=True)

    def _check_url(self) -> None:
        """Fetch the first document as OVH will, from the public URL; one clear line when it fails."""
        secret = self.redis.hget(self.key, "url:0")
        base = str(self.settings.inbound_public_url).rstrip("/")
        token = self.settings.inbound_token.get_secret_value()
        url = f"{base}/ovh/{token}/receivers/{secret.decode() if isinstance(secret, bytes) else ''}.csv"
        shown = f"{base}/ovh/***/receivers/***.csv"
        try:
            with urllib.request.urlopen(url, timeout=URL_CHECK_TIMEOUT_S) as answer:  # noqa: S310 (our own URL)
                head = answer.read(7)
        except urllib.error.HTTPError as exc:
            raise UsageError(
                f"the receivers documents cannot be served: {shown} answered HTTP {exc.code} (is sms-worker inbound "
                "using the same SMS_WORKER_INBOUND_TOKEN and Redis?); nothing was sent"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UsageError(
                f"the receivers documents cannot be served: {shown} does not answer ({reason}); start sms-worker "
                "inbound where SMS_WORKER_INBOUND_PUBLIC_URL points, or send with --via requests; nothing was sent"
            ) from None
        if head != b"number;":
            raise UsageError(f"the receivers documents cannot be served: {shown} does not answer with the CSV")
