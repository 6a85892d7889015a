"""The bulk attempt: the attempt lifecycle of ``lifecycle`` for a jobs call whose receivers are
a document (``receiversDocumentUrl``), not a list.

Same states and rules as any attempt (``lua/bulk.lua`` draws them): claimed with a rate-limit
slot held, calling, settled from OVH's answer, back to claimed when a try surely did not reach
OVH, ambiguous when it may have, then reconciled from OVH's records, never by age. Owners are
leases (``worker.attempts.lease``), and a dead owner's attempts are taken over by any worker's
sweep. What differs:

- the attempt is keyed by the document (``keys.bulk_attempt``), and stays once settled: a claim
  of a document that has one is refused, so a killed or re-run campaign never makes a second
  job for a document already sent;
- the proof of an ambiguous call is an SMS of the campaign's tag to one of the document's
  receivers in OVH's records (``GET .../outgoing?tag=&receiver=``), or a pending job to one
  (``GET .../jobs``); none after the grace (``reconcile_grace_s`` after the call became
  ambiguous) and the document is due again, in the same step: exactly once;
- OVH's answer carries no SMS ids in this mode: settlement records the document as sent, and
  the rows' own results come later from delivery callbacks and tag listings
  (``worker.campaigns.outcomes``).

Members of the sets are ``<campaign id>/<document number>`` (``member``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import redis

from contracts.redis_connection import text
from worker.attempts.lifecycle import Owner
from worker.store import keys, scripts


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """A document of a bulk campaign: what a bulk attempt sends in place of receivers."""

    campaign_id: str
    number: int

    @property
    def member(self) -> str:
        return f"{self.campaign_id}/{self.number}"

    @classmethod
    def parse(cls, member: bytes | str) -> DocumentRef:
        campaign_id, _, number = text(member).rpartition("/")
        return cls(campaign_id, int(number))


@dataclass(frozen=True, slots=True)
class BulkAttempt:
    """A document's attempt as stored: its state and what reconciliation needs (Redis ms)."""

    ref: DocumentRef
    state: str
    owner: str = ""
    called_at_ms: int = 0
    absent_after_ms: int = 0
    deadline_ms: int = 0
    reason: str = ""
    report: dict[str, Any] | None = None


class BulkKeys(TypedDict):
    attempt: str  # the document's attempt (keys.bulk_attempt)
    lease: str  # the caller's (for takeover: the dead owner's)
    inflight: str
    reconcile: str
    due: str
    campaign: str
    tracked: str


class BulkDocument(TypedDict):
    op: str
    member: str
    campaign_id: str
    token: str
    worker: str
    attempt_ttl_s: NotRequired[int]
    due_ms: NotRequired[int]
    report: NotRequired[str]
    reason: NotRequired[str]
    grace_ms: NotRequired[int]
    deadline_ms: NotRequired[int]
    outcome: NotRequired[str]
    rows: NotRequired[int]
    dead_owner: NotRequired[str]


class _Bulk(scripts.Script[BulkKeys, BulkDocument, str]):
    """Every op answers a word, a state or a number: as text."""

    NAME = "bulk"
    Keys = BulkKeys

    def reply(self, raw: Any) -> str:
        return scripts.text(raw)


def _yes(reply: str) -> bool:
    """A transition's answer: ``1`` applied (or applied already), ``0`` refused."""
    return reply == "1"


class BulkAttempts:
    """The transitions of bulk attempts (``lua/bulk.lua``) for the bulk dispatcher, its sweep
    and its reconciliation. ``grace_ms`` and ``deadline_ms`` as in ``Attempts``."""

    def __init__(self, client: redis.Redis, *, attempt_ttl_s: int, grace_ms: int, deadline_ms: int) -> None:
        self.redis = client
        self.attempt_ttl_s = attempt_ttl_s
        self.grace_ms = grace_ms
        self.deadline_ms = deadline_ms
        self._script = _Bulk(client)

    def _run(
        self, op: str, ref: DocumentRef, owner: Owner | None, lease_token: str | None = None, **fields: Any
    ) -> str:
        token = owner.token if owner else ""
        document: BulkDocument = {
            "op": op,
            "member": ref.member,
            "campaign_id": ref.campaign_id,
            "token": token,
            "worker": owner.worker if owner else "",
            **{name: value for name, value in fields.items() if value is not None},  # type: ignore[typeddict-item]
        }
        named: BulkKeys = {
            "attempt": keys.bulk_attempt(ref.campaign_id, ref.number),
            "lease": keys.lease(lease_token if lease_token is not None else token),
            "inflight": keys.BULK_INFLIGHT,
            "reconcile": keys.BULK_RECONCILE,
            "due": keys.BULK_DUE,
            "campaign": keys.bulk_campaign(ref.campaign_id),
            "tracked": keys.BULK_TRACKED,
        }
        return self._script(named, document)

    # -- the owner's steps ----------------------------------------------------------------------

    def claim(self, owner: Owner, ref: DocumentRef) -> str:
        """due -> calling; ``"ok"`` (or ``"same"``: a retried claim that applied), else why not:
        ``"paused"``, ``"cancelled"``, ``"notdue"``, ``"taken"`` (the document has an attempt),
        ``"gone"`` (no such campaign any more), ``"nolease"``."""
        return self._run("claim", ref, owner, attempt_ttl_s=self.attempt_ttl_s)

    def call(self, owner: Owner, ref: DocumentRef) -> bool:
        return _yes(self._run("call", ref, owner))

    def uncall(self, owner: Owner, ref: DocumentRef) -> bool:
        return _yes(self._run("uncall", ref, owner))

    def release(self, owner: Owner, ref: DocumentRef, *, due_ms: int | None = None) -> bool:
        """claimed -> due again (at ``due_ms``, Redis ms; now by default): the call never left."""
        return _yes(self._run("release", ref, owner, due_ms=due_ms))

    def answer(self, ref: DocumentRef, report: Any) -> str:
        return self._run("answer", ref, None, report=json.dumps(report, separators=(",", ":")))

    def ambiguous(self, owner: Owner, ref: DocumentRef, reason: str) -> bool:
        return _yes(
            self._run("ambiguous", ref, owner, reason=reason, grace_ms=self.grace_ms, deadline_ms=self.deadline_ms)
        )

    def settle(
        self,
        ref: DocumentRef,
        outcome: str,
        *,
        owner: Owner | None,
        rows: int,
        report: Any = None,
        reason: str = "",
    ) -> bool:
        """calling (``owner``) or ambiguous (``owner`` None: a reconciler) -> ``outcome`` (``sent``
        or ``failed``); ``False`` when this caller may not settle it."""
        return _yes(
            self._run(
                "settle",
                ref,
                owner,
                outcome=outcome,
                rows=rows,
                report="" if report is None else json.dumps(report, separators=(",", ":")),
                reason=reason,
            )
        )

    def absent(self, ref: DocumentRef) -> bool:
        """ambiguous -> due again: OVH's records prove the call was not carried out."""
        return _yes(self._run("absent", ref, None))

    # -- the sweep and reconciliation -----------------------------------------------------------

    def sweep(self, reason: str) -> list[tuple[DocumentRef, str]]:
        """Take over every bulk attempt whose owner's lease expired: ``(document, what happened)``."""
        members: list[bytes] = self.redis.zrange(keys.BULK_INFLIGHT, 0, -1)  # type: ignore[assignment]
        done = []
        for member in members:
            ref = DocumentRef.parse(member)
            owner = self.redis.hget(keys.bulk_attempt(ref.campaign_id, ref.number), "owner")
            if owner is None:
                self.redis.zrem(keys.BULK_INFLIGHT, member)
                continue
            owner_token = text(owner)
            if self.redis.exists(keys.lease(owner_token)):
                continue
            what = self._run(
                "takeover",
                ref,
                None,
                lease_token=owner_token,
                dead_owner=owner_token,
                grace_ms=self.grace_ms,
                deadline_ms=self.deadline_ms,
                reason=reason,
            )
            if what:
                done.append((ref, what))
        return done

    def load(self, ref: DocumentRef) -> BulkAttempt | None:
        raw = {text(k): text(v) for k, v in self.redis.hgetall(keys.bulk_attempt(ref.campaign_id, ref.number)).items()}
        if "state" not in raw:
            return None
        return BulkAttempt(
            ref=ref,
            state=raw["state"],
            owner=raw.get("owner", ""),
            called_at_ms=int(raw.get("called_at") or 0),
            absent_after_ms=int(raw.get("absent_after") or 0),
            deadline_ms=int(raw.get("deadline") or 0),
            reason=raw.get("reason", ""),
            report=json.loads(raw["report"]) if raw.get("report") else None,
        )

    def next_ambiguous(self, now_ms: int) -> DocumentRef | None:
        """The ambiguous document due for a look at ``now_ms`` (Redis ms), or ``None``."""
        found: list[bytes] = self.redis.zrangebyscore(keys.BULK_RECONCILE, "-inf", now_ms, start=0, num=1)  # type: ignore[assignment]
        return DocumentRef.parse(found[0]) if found else None

    def look_again(self, ref: DocumentRef, at_ms: int) -> None:
        self.redis.zadd(keys.BULK_RECONCILE, {ref.member: at_ms}, xx=True)
