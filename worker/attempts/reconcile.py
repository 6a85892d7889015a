"""Reconciliation: what OVH really did with an ambiguous jobs call, before anything is resent.

An attempt is ambiguous when its call may have been carried out: a read timeout or a reset after
the request left, a 500/502, or a worker that lost its lease (or track of the call) during it.
Reconcilers (a thread in every worker process) take ambiguous attempts one at a time and look
at OVH's records. An SMS in those records is proof for one attempt only:

1. OVH's answer, when it was recorded on the attempt (its owner got it but could not settle),
   names the attempt's own SMS: no OVH call for the receivers it covers.
2. The other receivers are looked for in what OVH created in the call's own window (when its last
   try left, to that try's deadline: connect plus read timeout), with one listing of
   ``GET /sms/{sn}/outgoing`` filtered by ``creationDatetime.from``/``.to`` (OVH's clock, from
   the call's Redis time and python-ovh's clock offset), ``sender`` and ``tag`` when the call had
   them, ``receiver`` when it had one. An id already marked as another call's proof
   (``keys.sms``: written when OVH's answer named it or a reconciliation found it, whatever the
   tracking setting) is skipped; each other id is read (``GET .../outgoing/{id}``) and counts for
   a receiver only with the exact text OVH stores for this call (the message, plus the STOP
   mention OVH appends to a commercial SMS): never a text that merely starts the same.
3. Receivers still missing, when OVH may hold the call (a ``differedPeriod``; a commercial SMS
   at night, 20:00 to 08:00, on a weekend or a French public holiday: ``may_be_pending``): the
   pending jobs (``GET /sms/{sn}[/users/{login}]/jobs``), read the same way.

While another attempt with the same receiver and text (``CallMeta.proof``) is still calling, the
look waits for it to settle: its SMS are its own. The settle step checks again, atomically, that
no SMS found is another call's and no such attempt is calling, and marks the SMS found as this
call's; so two reconcilers, or a reconciler and an owner, never count one SMS twice.

Receivers found are settled ``sent`` with OVH's id and credits. Receivers missing from a look made
after the attempt's ``absent_after`` (its last try's deadline plus ``reconcile_grace_s``: time for
OVH's records to show a call that was carried out) are proven absent and staged again, in the
same step that settles the rest: exactly once. A look that fails is tried again later; after
``reconcile_deadline_s`` the receivers still unresolved end ``unknown``, with the reason. Every
OVH call here takes a slot of the shared rate limiter's lookup lane, below ``high`` and
above the bulk lanes: an ambiguous call is looked up within seconds even while a campaign wants
every slot (and never takes the headroom kept for one-time codes).
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import redis

from worker.attempts import steps
from worker.attempts.lifecycle import Attempt, Attempts, Look, Outcome
from worker.attempts.settlement import Sent, from_findings, from_report_findings
from worker.batching.buffers import CallMeta, Entry
from worker.errors import GatewayError
from worker.ops.telemetry import Telemetry
from worker.ovhcloud.background_calls import BackgroundCalls
from worker.ovhcloud.jobs import JobBody
from worker.ovhcloud.rate_limit import LOOKUP_LANE
from worker.phones import e164
from worker.store import keys, scripts

log = logging.getLogger(__name__)

#: Seconds of OVH's clock added on each side of a call's window (OVH stores whole seconds).
WINDOW_MARGIN_S = 5.0
#: How long an attempt taken by a reconciler is hidden from the others (ms): longer than a look.
VISIBILITY_MS = 120_000
#: Wait before looking again after a look failed (ms).
RETRY_LOOK_MS = 5_000
#: Wait before looking again while another attempt with the same receiver and text is calling (ms).
WAIT_FOR_CALLING_MS = 1_000
#: Longest a reconciler sleeps with nothing due (seconds).
IDLE_WAIT_S = 2.0


class _Abandon(Exception):
    """The look cannot finish now (too many candidates to read in one look): try again later."""


@dataclass(frozen=True, slots=True)
class _Record:
    """One SMS in OVH's records, as a look reads it."""

    ovh_id: int
    receiver: str
    message: str
    credits: float


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
        self.api = calls.in_lane(LOOKUP_LANE)
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
        looked_at = self._redis_ms()
        wanted = {entry.receiver for entry in attempt.entries}
        sent: dict[str, Sent] = {}
        refused: dict[str, str] = {}
        if attempt.report is not None:
            sent, refused = from_report_findings(attempt, attempt.report)
            elsewhere = self._proof_of_others(attempt, [s.ovh_id for s in sent.values() if s.ovh_id is not None])
            sent = {r: s for r, s in sent.items() if s.ovh_id not in elsewhere}
        missing = wanted - set(sent) - set(refused)
        how = "OVH's recorded answer"
        if missing:
            if self._calling_with(attempt, missing):
                self.attempts.look_again(attempt.call_id, looked_at + WAIT_FOR_CALLING_MS)
                return False
            how = "OVH's records"
            try:
                sent.update(self.look_up(attempt, missing))
            except (GatewayError, _Abandon) as exc:
                if looked_at >= attempt.deadline_ms:
                    reason = f"OVH's records could not be read before the reconciliation deadline: {exc}"
                    outcome = from_findings(
                        attempt, sent, refused=refused, unknown_reason=reason, default_queue=self.default_queue
                    )
                    return self._settle(attempt, outcome, reason)
                log.info("call %s: OVH's records not read (%s); looking again later", attempt.call_id, exc)
                self.attempts.look_again(attempt.call_id, looked_at + RETRY_LOOK_MS)
                return False
            missing -= set(sent)
        if not missing:
            outcome = from_findings(attempt, sent, refused=refused, default_queue=self.default_queue)
            return self._settle(attempt, outcome, f"all found in {how}")
        if looked_at >= attempt.absent_after_ms:
            outcome = from_findings(attempt, sent, refused=refused, resend=missing, default_queue=self.default_queue)
            return self._settle(attempt, outcome, f"{len(missing)} proven absent, sent again")
        self.attempts.look_again(attempt.call_id, attempt.absent_after_ms)
        return False

    def _settle(self, attempt: Attempt, outcome: Outcome, how: str) -> bool:
        listed_at, in_flight = self._in_flight()
        look = Look(uuid.uuid4().hex, listed_at, tuple(c for c in in_flight if c != attempt.call_id))
        reply = self.attempts.settle(attempt, outcome, owner=None, look=look)
        if isinstance(reply, steps.ProofTaken):
            log.info("call %s: SMS %s is another call's proof; looking again", attempt.call_id, reply.ovh_id)
            self.attempts.look_again(attempt.call_id, listed_at)
            return False
        if isinstance(reply, steps.SettleFirst):
            self.attempts.look_again(attempt.call_id, listed_at + WAIT_FOR_CALLING_MS)
            return False
        if not isinstance(reply, steps.Settled):
            return False  # another reconciler settled it
        self.telemetry.results(reply.published)
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

    # -- what other attempts hold -----------------------------------------------------------------

    def _in_flight(self) -> tuple[int, list[str]]:
        """Redis ms now and the attempts claimed or calling then, read in one atomic step."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.zrange(keys.INFLIGHT, 0, -1)
            (seconds, micros), members = pipe.execute()
        return int(seconds) * 1000 + int(micros) // 1000, [scripts.text(m) for m in members]

    def _calling_with(self, attempt: Attempt, receivers: set[str]) -> bool:
        """Whether another attempt with the same proof key is calling one of ``receivers``."""
        _, members = self._in_flight()
        others = [m for m in members if m != attempt.call_id]
        if not others:
            return False
        with self.redis.pipeline(transaction=False) as pipe:
            for call_id in others:
                pipe.hmget(keys.attempt(call_id), "state", "meta", "entries")
            rows = pipe.execute()
        for state, meta, entries in rows:
            if state is None or scripts.text(state) != "calling" or meta is None:
                continue
            if CallMeta.decode(meta).proof != attempt.meta.proof:
                continue
            held = {Entry.decode(line).receiver for line in scripts.text(entries).split("\n") if line}
            if held & receivers:
                return True
        return False

    def _proof_of_others(self, attempt: Attempt, ids: Iterable[int]) -> set[int]:
        """Of ``ids``, those marked as another call's proof."""
        ids = list(ids)
        if not ids:
            return set()
        with self.redis.pipeline(transaction=False) as pipe:
            for sms_id in ids:
                pipe.hget(keys.sms(sms_id), "call_id")
            holders = pipe.execute()
        return {
            sms_id
            for sms_id, holder in zip(ids, holders, strict=True)
            if holder is not None and scripts.text(holder) != attempt.call_id
        }

    # -- looking at OVH's records ---------------------------------------------------------------

    def _get(self, path: str, **params: Any) -> Any:
        self.calls += 1
        self._lookups += 1
        return self.api.get(path, **params)

    def look_up(self, attempt: Attempt, wanted: set[str]) -> dict[str, Sent]:
        """Receivers of ``attempt`` OVH created an SMS for in the call's window, with its id and
        credits: SMS marked as another call's proof and other texts left out."""
        body = attempt.meta.body
        service = attempt.service
        offset_s = self.gateway.ovh_now() - self._redis_ms() / 1000
        called_s = attempt.called_at_ms / 1000 + offset_s
        try_s = (attempt.try_ms or self.attempts.timing.try_ms) / 1000  # an older version recorded none
        until_s = min(called_s + try_s, self.gateway.ovh_now())
        params: dict[str, str] = {
            "creationDatetime.from": _iso(called_s - WINDOW_MARGIN_S),
            "creationDatetime.to": _iso(until_s + WINDOW_MARGIN_S),
        }
        if body.get("sender"):
            params["sender"] = body["sender"]
        if body.get("tag"):
            params["tag"] = body["tag"]
        if len(wanted) == 1:
            params["receiver"] = next(iter(wanted))
        sent: dict[str, Sent] = {}
        ids = self._get(f"/sms/{service}/outgoing", **params)
        self._read(f"/sms/{service}/outgoing", self._candidates(attempt, ids), attempt.meta, wanted, sent)
        if wanted - set(sent) and may_be_pending(body, called_s, called_s + try_s):
            jobs = f"/sms/{service}/jobs" if attempt.login is None else f"/sms/{service}/users/{attempt.login}/jobs"
            self._read(jobs, self._candidates(attempt, self._get(jobs)), attempt.meta, wanted, sent)
        return sent

    def _candidates(self, attempt: Attempt, ids: Iterable[int]) -> list[int]:
        """Ids not marked as another call's proof (those cannot be this call's), oldest first."""
        ids = sorted(int(i) for i in ids)
        others = self._proof_of_others(attempt, ids)  # one round trip for the whole listing
        return [i for i in ids if i not in others]

    def _read(self, path: str, ids: list[int], meta: CallMeta, wanted: set[str], sent: dict[str, Sent]) -> None:
        """Read each id until every wanted receiver is found; ids beyond ``max_lookups`` wait."""
        if len(ids) > self.max_lookups:
            raise _Abandon(f"{len(ids)} candidate SMS to read, more than {self.max_lookups} allowed per look")
        for sms_id in ids:
            if not wanted - set(sent):
                return
            record = _parse(self._get(f"{path}/{sms_id}"))
            if record.receiver in wanted and record.receiver not in sent and same_text(record.message, meta):
                sent[record.receiver] = Sent(record.ovh_id, record.credits)


def _parse(raw: Any) -> _Record:
    """An ``sms.Outgoing`` or ``sms.Job`` as a look needs it."""
    reported = str(raw.get("receiver") or "")
    return _Record(
        ovh_id=int(raw["id"]),
        receiver=e164(reported) or reported,
        message=str(raw.get("message") or ""),
        credits=float(raw.get("credits") or 0.0),
    )


#: The STOP mention OVH appends to a commercial SMS, as its records show it: OVH's documents spell
#: it "STOP au 36111" or "STOP 36184", on a line of its own.
_STOP_MENTION = re.compile(r"\n?STOP (?:au )?\d{4,6}\s*")


def same_text(stored: str, meta: CallMeta) -> bool:
    """Whether an SMS OVH stores with text ``stored`` carries this call's message: the exact text,
    or for a commercial SMS the message followed by OVH's STOP mention and nothing else."""
    if stored == meta.text or stored == meta.body["message"]:
        return True
    if meta.body["noStopClause"] or not stored.startswith(meta.body["message"]):
        return False
    return _STOP_MENTION.fullmatch(stored[len(meta.body["message"]) :]) is not None


#: OVH holds commercial SMS (``noStopClause`` false) sent out of hours, French time, until the
#: next open time. Its documents disagree on the hours (20:00 or 22:00 to 08:00; Saturday held or
#: not; public holidays named only in its legal FAQ), so this is the widest reading: from 20:00
#: to 08:00, on Saturdays, Sundays and French public holidays. Wider costs one more lookup on an
#: ambiguous call; narrower could send an SMS twice.
_PARIS = ZoneInfo("Europe/Paris")
OPEN_FROM_HOUR, OPEN_UNTIL_HOUR = 8, 20


@lru_cache(maxsize=16)
def _french_holidays(year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("FR", years=year)


def held_time(moment_s: float) -> bool:
    """Whether OVH may hold a commercial SMS created at ``moment_s`` (unix seconds)."""
    local = datetime.fromtimestamp(moment_s, tz=_PARIS)
    day: date = local.date()
    return (
        local.weekday() >= 5
        or not OPEN_FROM_HOUR <= local.hour < OPEN_UNTIL_HOUR
        or day in _french_holidays(local.year)
    )


def may_be_pending(body: JobBody, called_s: float, until_s: float | None = None) -> bool:
    """Whether a call made between ``called_s`` and ``until_s`` (unix seconds, OVH's clock) may
    wait in OVH's pending jobs rather than in its outgoing records."""
    if int(body.get("differedPeriod") or 0) > 0:
        return True
    if body.get("noStopClause", False):
        return False
    return held_time(called_s) or (until_s is not None and held_time(until_s))


def _iso(unix_s: float) -> str:
    return datetime.fromtimestamp(int(unix_s), tz=UTC).isoformat()
