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

The account's records list every user's SMS too (those sent through ``users/{login}/jobs``), and
``sms.Outgoing`` does not say through which user. When another unresolved attempt (claimed,
calling or ambiguous) with the same proof key and receiver belongs to another user (or to the
account, for a user's attempt) — rare: the same text to the same number from two users at once —
an SMS found for that receiver counts only if it is the right user's: for a user's attempt it
must be in that user's own listing (``GET /sms/{sn}/users/{login}/outgoing?receiver=``), for an
account-level attempt in none of those users' listings (the pending jobs likewise, through
``.../users/{login}/jobs``). One more lookup per (user, receiver) concerned, none when no such
attempt exists. The settle step refuses (``SettleFirst``) while an attempt of another user that
the look did not take into account is ambiguous with a receiver it found.

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
from collections.abc import Callable, Iterable
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
class _Others:
    """The other unresolved attempts (claimed, calling or ambiguous) with an attempt's proof key
    and one of its receivers, as a look reads them before it looks at OVH's records."""

    calling: frozenset[str]  # receivers of the attempt another such attempt is calling
    rivals: dict[str, frozenset[str | None]]  # receiver -> the other logins (None: the account) of such attempts
    rival_ids: tuple[str, ...]  # those attempts of another login: the ones this look takes into account


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
        self._users_sms: dict[tuple[str, str, str], set[int]] = {}  # of the look in progress: see _user_sms
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
        self._users_sms = {}
        looked_at = self._redis_ms()
        wanted = {entry.receiver for entry in attempt.entries}
        others = self._others(attempt, wanted)
        sent: dict[str, Sent] = {}
        refused: dict[str, str] = {}
        if attempt.report is not None:
            sent, refused = from_report_findings(attempt, attempt.report)
            elsewhere = self._proof_of_others(attempt, [s.ovh_id for s in sent.values() if s.ovh_id is not None])
            sent = {r: s for r, s in sent.items() if s.ovh_id not in elsewhere}
        missing = wanted - set(sent) - set(refused)
        how = "OVH's recorded answer"
        if missing:
            if others.calling & missing:
                self.attempts.look_again(attempt.call_id, looked_at + WAIT_FOR_CALLING_MS)
                return False
            how = "OVH's records"
            try:
                sent.update(self.look_up(attempt, missing, others.rivals))
            except (GatewayError, _Abandon) as exc:
                if looked_at >= attempt.deadline_ms:
                    reason = f"OVH's records could not be read before the reconciliation deadline: {exc}"
                    outcome = from_findings(
                        attempt, sent, refused=refused, unknown_reason=reason, default_queue=self.default_queue
                    )
                    return self._settle(attempt, outcome, reason, others)
                log.info("call %s: OVH's records not read (%s); looking again later", attempt.call_id, exc)
                self.attempts.look_again(attempt.call_id, looked_at + RETRY_LOOK_MS)
                return False
            missing -= set(sent)
        if not missing:
            outcome = from_findings(attempt, sent, refused=refused, default_queue=self.default_queue)
            return self._settle(attempt, outcome, f"all found in {how}", others)
        if looked_at >= attempt.absent_after_ms:
            outcome = from_findings(attempt, sent, refused=refused, resend=missing, default_queue=self.default_queue)
            return self._settle(attempt, outcome, f"{len(missing)} proven absent, sent again", others)
        self.attempts.look_again(attempt.call_id, attempt.absent_after_ms)
        return False

    def _settle(self, attempt: Attempt, outcome: Outcome, how: str, others: _Others) -> bool:
        listed_at, unresolved = self._unresolved()
        others_then = tuple(c for c in unresolved if c != attempt.call_id)
        look = Look(uuid.uuid4().hex, listed_at, others_then, others.rival_ids)
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

    def _unresolved(self) -> tuple[int, list[str]]:
        """Redis ms now and the attempts claimed, calling or ambiguous then, read in one atomic step."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.zrange(keys.INFLIGHT, 0, -1)
            pipe.zrange(keys.RECONCILE, 0, -1)
            (seconds, micros), in_flight, ambiguous = pipe.execute()
        members = dict.fromkeys(scripts.text(m) for m in [*in_flight, *ambiguous])  # deduped, in order
        return int(seconds) * 1000 + int(micros) // 1000, list(members)

    def _others(self, attempt: Attempt, receivers: set[str]) -> _Others:
        """The other unresolved attempts with ``attempt``'s proof key and one of ``receivers``:
        two Redis round trips (states and metas of every unresolved attempt), and a third for the
        entries of those with the same proof key, if any."""
        _, members = self._unresolved()
        others = [m for m in members if m != attempt.call_id]
        if not others:
            return _Others(frozenset(), {}, ())
        with self.redis.pipeline(transaction=False) as pipe:
            for call_id in others:
                pipe.hmget(keys.attempt(call_id), "state", "meta")
            rows = pipe.execute()
        alike: list[tuple[str, str, str | None]] = []  # (call id, state, login)
        for call_id, (state, meta) in zip(others, rows, strict=True):
            if state is None or meta is None or scripts.text(state) not in ("claimed", "calling", "ambiguous"):
                continue
            other = CallMeta.decode(meta)
            if other.proof == attempt.meta.proof:
                alike.append((call_id, scripts.text(state), other.login))
        if not alike:
            return _Others(frozenset(), {}, ())
        with self.redis.pipeline(transaction=False) as pipe:
            for call_id, _, _ in alike:
                pipe.hget(keys.attempt(call_id), "entries")
            entries = pipe.execute()
        calling: set[str] = set()
        rivals: dict[str, set[str | None]] = {}
        rival_ids = []
        for (call_id, state, login), raw in zip(alike, entries, strict=True):
            held = {Entry.decode(line).receiver for line in scripts.text(raw or "").split("\n") if line} & receivers
            if not held:
                continue
            if state == "calling":
                calling |= held
            if login != attempt.login:
                rival_ids.append(call_id)
                for receiver in held:
                    rivals.setdefault(receiver, set()).add(login)
        return _Others(frozenset(calling), {r: frozenset(ls) for r, ls in rivals.items()}, tuple(rival_ids))

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

    def look_up(
        self, attempt: Attempt, wanted: set[str], rivals: dict[str, frozenset[str | None]] | None = None
    ) -> dict[str, Sent]:
        """Receivers of ``attempt`` OVH created an SMS for in the call's window, with its id and
        credits: SMS marked as another call's proof, other texts, and for a receiver in ``rivals``
        (its other logins' unresolved attempts, ``_others``) other users' SMS left out."""
        rivals = rivals or {}
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
        outgoing = self._candidates(attempt, ids)
        self._read(
            f"/sms/{service}/outgoing", outgoing, attempt, wanted, sent, lambda r: self._whose(attempt, r, rivals)
        )
        if wanted - set(sent) and may_be_pending(body, called_s, called_s + try_s):
            if attempt.login is None:  # the account's pending jobs hold its users' too
                jobs, own = f"/sms/{service}/jobs", (lambda r: self._whose(attempt, r, rivals, kind="jobs"))
            else:  # only the user's own
                jobs, own = f"/sms/{service}/users/{attempt.login}/jobs", (lambda r: True)
            self._read(jobs, self._candidates(attempt, self._get(jobs)), attempt, wanted, sent, own)
        return sent

    def _candidates(self, attempt: Attempt, ids: Iterable[int]) -> list[int]:
        """Ids not marked as another call's proof (those cannot be this call's), oldest first."""
        ids = sorted(int(i) for i in ids)
        others = self._proof_of_others(attempt, ids)  # one round trip for the whole listing
        return [i for i in ids if i not in others]

    def _read(
        self,
        path: str,
        ids: list[int],
        attempt: Attempt,
        wanted: set[str],
        sent: dict[str, Sent],
        own: Callable[[_Record], bool],
    ) -> None:
        """Read each id until every wanted receiver is found; ids beyond ``max_lookups`` wait.
        A record counts when its receiver is wanted, its text the call's, and ``own`` says it
        was made through the attempt's own user (or the account)."""
        if len(ids) > self.max_lookups:
            raise _Abandon(f"{len(ids)} candidate SMS to read, more than {self.max_lookups} allowed per look")
        for sms_id in ids:
            if not wanted - set(sent):
                return
            record = _parse(self._get(f"{path}/{sms_id}"))
            if (
                record.receiver in wanted
                and record.receiver not in sent
                and same_text(record.message, attempt.meta)
                and own(record)
            ):
                sent[record.receiver] = Sent(record.ovh_id, record.credits)

    def _whose(
        self, attempt: Attempt, record: _Record, rivals: dict[str, frozenset[str | None]], *, kind: str = "outgoing"
    ) -> bool:
        """Whether ``record``, an SMS of the account's records that matches ``attempt``, was made
        through the attempt's own user (``attempt.login``, or the account when None), where other
        logins' unresolved attempts (``rivals``) could have made it: a user's SMS is in that
        user's listing, an account-level SMS in none of its users'."""
        logins = rivals.get(record.receiver)
        if not logins:
            return True  # nobody else could have made it: no lookup
        if attempt.login is not None:
            return record.ovh_id in self._user_sms(attempt, attempt.login, record.receiver, kind)
        return not any(
            record.ovh_id in self._user_sms(attempt, login, record.receiver, kind) for login in logins if login
        )

    def _user_sms(self, attempt: Attempt, login: str, receiver: str, kind: str) -> set[int]:
        """Ids of the SMS made through user ``login``: its outgoing SMS to ``receiver`` with the
        call's sender and tag (``GET .../users/{login}/outgoing``: OVH offers no date filter
        there), or its pending jobs; one lookup per (login, receiver) and look, at most
        ``max_lookups`` per look."""
        key = (kind, login, receiver if kind == "outgoing" else "")  # pending jobs: no filter at OVH
        if key in self._users_sms:
            return self._users_sms[key]
        if len(self._users_sms) >= self.max_lookups:
            raise _Abandon(f"more than {self.max_lookups} users' listings to read in one look")
        params: dict[str, str] = {}
        if kind == "outgoing":
            body = attempt.meta.body
            params = {"receiver": receiver, **{name: body[name] for name in ("sender", "tag") if body.get(name)}}
        ids = {int(i) for i in self._get(f"/sms/{attempt.service}/users/{login}/{kind}", **params)}
        self._users_sms[key] = ids
        return ids


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
