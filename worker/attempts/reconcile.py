"""Reconciliation: what OVH really did with an ambiguous jobs call, before anything is resent.

An attempt is ambiguous when its call may have been carried out: a read timeout or a reset after
the request left, a 500/502, or a worker that lost its lease during the call. Reconcilers (a
thread in every worker process) take ambiguous attempts one at a time and look at OVH's records:

1. OVH's answer was recorded on the attempt (its owner got it but could not settle): settle from
   it, no OVH call.
2. One listing of what OVH created in the call's window: ``GET /sms/{sn}/outgoing`` filtered by
   ``creationDatetime.from``/``.to`` (OVH's clock, from the call's Redis time and python-ovh's
   clock offset), ``sender`` and ``tag`` when the call had them, ``receiver`` when it had one.
   Ids already mapped to a settled SMS of ours (``keys.sms``) are skipped; each other id is read
   (``GET .../outgoing/{id}``: receiver, text, credits) until every receiver is found.
3. Receivers still missing, when the call may have left a job pending at OVH (``differedPeriod``,
   or a commercial SMS sent at night or on a Sunday, French time, which OVH holds until the
   morning): the pending jobs (``GET /sms/{sn}[/users/{login}]/jobs``), each read the same way.

Receivers found are settled ``sent`` with OVH's id and credits. Receivers missing from a look
made after the attempt's grace window (``reconcile_grace_s`` after it became ambiguous: time for
OVH's records to show a call that was carried out) are proven absent and staged again, in the
same step that settles the rest: exactly once. A look that fails is tried again later; after
``reconcile_deadline_s`` the receivers still unresolved end ``unknown``, with the reason. Every
OVH call here takes a slot of the shared rate limiter's reconciliation lane, below ``high`` and
above the bulk lanes: an ambiguous call is looked up within seconds even while a campaign wants
every slot (and never takes the headroom kept for one-time codes).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis

from worker.attempts.lifecycle import Attempt, Attempts, Outcome
from worker.attempts.settlement import Sent, e164, from_findings, from_report
from worker.errors import GatewayError
from worker.ops.telemetry import Telemetry
from worker.ovhcloud.background_calls import BackgroundCalls
from worker.ovhcloud.jobs import JobBody
from worker.ovhcloud.rate_limit import RECONCILE_LANE
from worker.store import keys

log = logging.getLogger(__name__)

#: Seconds of OVH's clock added on each side of a call's window (OVH stores whole seconds).
WINDOW_MARGIN_S = 5.0
#: How long an attempt taken by a reconciler is hidden from the others (ms): longer than a look.
VISIBILITY_MS = 120_000
#: Wait before looking again after a look failed (ms).
RETRY_LOOK_MS = 5_000
#: Longest a reconciler sleeps with nothing due (seconds).
IDLE_WAIT_S = 2.0


class _Abandon(Exception):
    """The look cannot finish now (too many candidates to read in one look): try again later."""


class Reconciler:
    """Resolves ambiguous attempts; ``run`` is the body of a reconciler thread."""

    def __init__(
        self,
        attempts: Attempts,
        calls: BackgroundCalls,
        *,
        default_queue: str,
        max_lookups: int,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.attempts = attempts
        self.redis = attempts.redis
        self.api = calls.in_lane(RECONCILE_LANE)
        self.gateway = calls.gateway
        self.default_queue = default_queue
        self.max_lookups = max_lookups
        self.telemetry = telemetry or Telemetry()
        self.calls = 0  # OVH calls made, for tests and the README's figures
        self._lookups = 0  # OVH calls of the look in progress
        self._stop = threading.Event()

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        while not stop.is_set():
            try:
                found = self.attempts.next_ambiguous(VISIBILITY_MS)
                if isinstance(found, Attempt):
                    self.reconcile(found)
                    continue
                due = found.next_due_ms
                wait = IDLE_WAIT_S if due is None else min(max((due - self._redis_ms()) / 1000, 0.01), IDLE_WAIT_S)
                self.redis.blpop([keys.RECONCILE_WAKE], timeout=wait)
            except redis.RedisError as exc:
                log.warning("reconciler: Redis does not answer (%s); trying again in 1 s", exc)
                stop.wait(1.0)
            except Exception:
                log.exception("reconciler error; going on in 1 s")
                stop.wait(1.0)

    def _redis_ms(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def reconcile(self, attempt: Attempt) -> bool:
        """One look at ``attempt``; ``True`` when it was settled."""
        self._lookups = 0
        if attempt.report is not None:
            outcome = from_report(attempt, attempt.report, self.default_queue)
            return self._settle(attempt, outcome, "OVH's recorded answer")
        looked_at = self._redis_ms()
        wanted = {entry.receiver for entry in attempt.entries}
        try:
            sent = self.look_up(attempt, wanted)
        except (GatewayError, _Abandon) as exc:
            if looked_at >= attempt.deadline_ms:
                reason = f"OVH's records could not be read before the reconciliation deadline: {exc}"
                return self._settle(
                    attempt, from_findings(attempt, {}, unknown_reason=reason, default_queue=self.default_queue), reason
                )
            log.info("call %s: OVH's records not read (%s); looking again later", attempt.call_id, exc)
            self.attempts.look_again(attempt.call_id, looked_at + RETRY_LOOK_MS)
            return False
        missing = wanted - set(sent)
        if not missing:
            return self._settle(attempt, from_findings(attempt, sent, default_queue=self.default_queue), "all found")
        if looked_at >= attempt.absent_after_ms:
            outcome = from_findings(attempt, sent, resend=missing, default_queue=self.default_queue)
            return self._settle(attempt, outcome, f"{len(missing)} proven absent, sent again")
        self.attempts.look_again(attempt.call_id, attempt.absent_after_ms)
        return False

    def _settle(self, attempt: Attempt, outcome: Outcome, how: str) -> bool:
        published = self.attempts.settle(attempt, outcome, owner=None)
        if published is None:
            return False  # another reconciler settled it
        self.telemetry.results(published)
        found = sum(s.n_sent for s in outcome.settlements)
        unknown = sum(s.n_unknown for s in outcome.settlements)
        log.info(
            "call %s reconciled (%s): %d sent, %d sent again, %d unknown; %d OVH lookups in this look",
            attempt.call_id,
            how,
            found,
            len(outcome.resend),
            unknown,
            self._lookups,
            extra={"call_id": attempt.call_id},
        )
        for kind, count in (("sent", found), ("resent", len(outcome.resend)), ("unknown", unknown)):
            if count:
                self.telemetry.reconciled(kind, count)
        return True

    # -- looking at OVH's records ---------------------------------------------------------------

    def _get(self, path: str, **params: Any) -> Any:
        self.calls += 1
        self._lookups += 1
        return self.api.get(path, **params)

    def look_up(self, attempt: Attempt, wanted: set[str]) -> dict[str, Sent]:
        """Receivers of ``attempt`` OVH created an SMS for, with its id and credits."""
        body = attempt.meta.body
        text = body["message"]
        service = attempt.service
        offset_s = self.gateway.ovh_now() - self._redis_ms() / 1000
        called_s = attempt.called_at_ms / 1000 + offset_s
        params: dict[str, str] = {
            "creationDatetime.from": _iso(called_s - WINDOW_MARGIN_S),
            "creationDatetime.to": _iso(self.gateway.ovh_now() + WINDOW_MARGIN_S),
        }
        if body.get("sender"):
            params["sender"] = body["sender"]
        if body.get("tag"):
            params["tag"] = body["tag"]
        if len(wanted) == 1:
            params["receiver"] = next(iter(wanted))
        ids = self._get(f"/sms/{service}/outgoing", **params)
        sent: dict[str, Sent] = {}
        self._read(f"/sms/{service}/outgoing", self._unknown_ids(ids), wanted, text, sent)
        if wanted - set(sent) and may_be_pending(body, called_s):
            jobs = f"/sms/{service}/jobs" if attempt.login is None else f"/sms/{service}/users/{attempt.login}/jobs"
            self._read(jobs, self._unknown_ids(self._get(jobs)), wanted, text, sent)
        return sent

    def _unknown_ids(self, ids: Iterable[int]) -> list[int]:
        """Ids not already mapped to a settled SMS of ours (those cannot be this call's)."""
        ids = list(ids)
        if not ids:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for sms_id in ids:
                pipe.exists(keys.sms(sms_id))
            known = pipe.execute()
        return [sms_id for sms_id, mapped in zip(ids, known, strict=True) if not mapped]

    def _read(self, path: str, ids: list[int], wanted: set[str], text: str, sent: dict[str, Sent]) -> None:
        """Read each id until every wanted receiver is found; ids beyond ``max_lookups`` wait."""
        if len(ids) > self.max_lookups:
            raise _Abandon(f"{len(ids)} candidate SMS to read, more than {self.max_lookups} allowed per look")
        for sms_id in ids:
            if not wanted - set(sent):
                return
            record = self._get(f"{path}/{sms_id}")
            receiver = e164(str(record.get("receiver") or ""))
            message = str(record.get("message") or "")
            if receiver in wanted and receiver not in sent and message.startswith(text):
                sent[receiver] = Sent(int(record["id"]), float(record.get("credits") or 0.0))


#: OVH holds commercial SMS (``noStopClause`` false) sent from 22:00 to 08:00 and on Sundays, French time.
_PARIS = ZoneInfo("Europe/Paris")


def may_be_pending(body: JobBody, called_s: float) -> bool:
    """Whether a call's SMS may wait in OVH's pending jobs rather than in its outgoing records."""
    if int(body.get("differedPeriod") or 0) > 0:
        return True
    if body.get("noStopClause", False):
        return False
    local = datetime.fromtimestamp(called_s, tz=_PARIS)
    return local.weekday() == 6 or local.hour >= 22 or local.hour < 8


def _iso(unix_s: float) -> str:
    return datetime.fromtimestamp(int(unix_s), tz=UTC).isoformat()
