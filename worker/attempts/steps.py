"""The Lua steps of the attempt lifecycle (``lua/``): each one's keys, document and reply, typed.

``lifecycle.Attempts`` calls them; nothing else does. Each document is what the script's header
comment describes, field for field.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, NotRequired, TypedDict

from worker.accounting.usage import UsageDocument
from worker.store import scripts

# -- claim --------------------------------------------------------------------------------------


class ClaimKeys(TypedDict):
    lease: str  # the caller's
    due: str  # the lane's due set
    buffer: str
    buffer_meta: str
    inflight: str
    attempt: str


class ClaimDocument(TypedDict):
    call_id: str
    batch_key: str
    lane: str
    linger_ms: int
    max: int  # receivers at most
    worker: str
    token: str
    attempt_ttl_s: int
    stale_ms: int  # how long the owner may take before its next step


@dataclass(frozen=True, slots=True)
class Claimed:
    """The attempt was recorded: its call meta (JSON) and its entries (encoded)."""

    meta: str
    entries: list[str]


@dataclass(frozen=True, slots=True)
class NothingDue:
    """The buffer has nothing due any more (another dispatcher took it)."""


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """The caller's lease is gone: it may not claim."""


@dataclass(frozen=True, slots=True)
class ClaimGone:
    """This call id was claimed and is no claim of the caller's any more (taken over, settled)."""


ClaimReply = Claimed | NothingDue | LeaseLost | ClaimGone


class Claim(scripts.Script[ClaimKeys, ClaimDocument, ClaimReply]):
    NAME = "claim"
    Keys = ClaimKeys

    def reply(self, raw: Any) -> ClaimReply:
        status = scripts.text(raw[0])
        if status == "ok":
            return Claimed(scripts.text(raw[1]), [scripts.text(entry) for entry in raw[2:]])
        if status == "gone":
            return ClaimGone()
        return LeaseLost() if status == "nolease" else NothingDue()


# -- attempt: the owner's transitions, and OVH's answer -----------------------------------------


class TransitionKeys(TypedDict):
    attempt: str
    lease: str  # the caller's
    inflight: str
    reconcile: str
    reconcile_wake: str


class OwnedSms(TypedDict):
    key: int  # index of keys.sms(id)
    id: int


class TransitionDocument(TypedDict):
    op: str  # call, uncall, ambiguous, answer
    call_id: str
    token: str
    worker: str
    try_number: NotRequired[int]  # the attempt's try number after the step (its token)
    stale_ms: NotRequired[int]  # call, uncall: how long the owner may take before its next step
    try_ms: NotRequired[int]  # call, ambiguous: a try's own deadline (connect + read timeouts)
    report: NotRequired[str]  # answer: OVH's SmsSendingReport, JSON
    owned: NotRequired[list[OwnedSms]]  # answer: the SMS ids it names
    owned_ttl_s: NotRequired[int]  # answer
    reason: NotRequired[str]  # ambiguous
    grace_ms: NotRequired[int]  # ambiguous
    deadline_ms: NotRequired[int]  # ambiguous


class Step(Enum):
    """What an owner's transition answered."""

    APPLIED = "applied"
    ALREADY = "already"  # applied before, by this owner: its reply was lost
    GONE = "gone"  # no such attempt any more (settled, released, taken over)
    TAKEN = "taken"  # another owner holds it
    NOLEASE = "nolease"  # the caller's lease expired
    REFUSED = "refused"  # the attempt is in another state

    @property
    def done(self) -> bool:
        """The transition holds, whether this call or an earlier one of the same owner applied it."""
        return self in (Step.APPLIED, Step.ALREADY)


class Transition(scripts.Script[TransitionKeys, TransitionDocument, str]):
    """A ``Step`` value for a transition; the attempt's state (``""``: gone) for an answer."""

    NAME = "attempt"
    Keys = TransitionKeys

    def reply(self, raw: Any) -> str:
        return scripts.text(raw)


# -- release ------------------------------------------------------------------------------------


class BufferKeys(TypedDict):
    """The batch key's buffer, its meta, and its lane's due set and wake-up list."""

    buffer: str
    buffer_meta: str
    due: str
    wake: str


class ReleaseKeys(BufferKeys):
    attempt: str
    lease: str  # the caller's
    inflight: str


class ReleaseDocument(TypedDict):
    call_id: str
    token: str
    worker: str
    tombstone_ttl_s: int


class Release(scripts.Script[ReleaseKeys, ReleaseDocument, int]):
    """The receivers given back, or -1 (not the owner, lease lost, or gone)."""

    NAME = "release"
    Keys = ReleaseKeys

    def reply(self, raw: Any) -> int:
        return int(raw)


# -- takeover -----------------------------------------------------------------------------------


class TakeoverKeys(BufferKeys):
    attempt: str
    owner_lease: str
    inflight: str
    reconcile: str
    reconcile_wake: str


class TakeoverDocument(TypedDict):
    call_id: str
    owner: str  # the owner's lease token
    batch_key: str
    grace_ms: int
    deadline_ms: int
    reason: str
    tombstone_ttl_s: int


class Takeover(scripts.Script[TakeoverKeys, TakeoverDocument, str]):
    """``requeued``, ``ambiguous`` or ``""`` (nothing to do)."""

    NAME = "takeover"
    Keys = TakeoverKeys

    def reply(self, raw: Any) -> str:
        return scripts.text(raw)


# -- settle -------------------------------------------------------------------------------------


class SettleKeys(BufferKeys):
    attempt: str
    lease: str  # the caller's (empty name for a reconciler)
    inflight: str
    reconcile: str
    stats: str
    pull: str
    receipts: str
    receipts_order: str


class SettleRequest(TypedDict):
    """One request's share of the call (key indexes for ``req`` to ``msgs``)."""

    id: str
    req: int
    outcomes: int
    result: int
    ready: int
    q: int
    msgs: int
    queue: str
    n_in_call: int
    n_sent: int
    n_failed: int
    n_unknown: int
    credits: float
    fragments: str  # the receivers' Fragment JSON objects, joined by ","
    error: str  # ErrorInfo JSON, or ""
    reserved: float
    spent: float


class SettleEvent(TypedDict):
    q: int
    msgs: int
    queue: str
    message_id: str
    payload: str  # CreditUsage JSON without quota_left


class SettleTracking(TypedDict):
    key: int
    id: int
    fields: dict[str, str | int | float]


class SettleCampaign(TypedDict):
    key: int
    service: str
    tag: str
    ttl_s: int
    sent: int
    failed: int
    invalid: int
    unknown: int
    credits: float


class InFlight(TypedDict):
    id: str  # call id
    key: int  # index of keys.attempt(id)


class SettleDocument(TypedDict):
    call_id: str
    fence: str  # "owner" or "reconciler"
    token: str  # the owner's lease token, or the reconciler's look
    worker: str
    quota: NotRequired[int]  # key index of the call's user's quota hash, when it has a user
    result_ttl_s: int
    request_ttl_s: int
    queue_cap: int
    result_actor: str
    tombstone_ttl_s: int
    settlements: list[SettleRequest]
    events: list[SettleEvent]
    owned: list[OwnedSms]  # every SMS said sent
    owned_ttl_s: int
    proof: str
    found: list[str]  # reconciler: receivers it found an SMS for
    listed_at: int  # reconciler: Redis ms when it read the in-flight set
    others: list[InFlight]  # reconciler: the in-flight attempts it read then
    tracking_ttl_s: int
    tracking: list[SettleTracking]
    pull_cap: int
    resend: list[str]  # encoded entries
    campaign: NotRequired[SettleCampaign]
    usage: NotRequired[UsageDocument]  # consumption per day, user, tag and sender (lua/_usage.lua)


@dataclass(frozen=True, slots=True)
class Settled:
    """The attempt is settled: the status of each result published; ``again``: by an earlier
    run of the same step (its reply was lost), nothing applied this time."""

    published: list[str]
    again: bool = False


@dataclass(frozen=True, slots=True)
class NotSettled:
    """This caller may not settle the attempt: ``why`` (``gone``, ``taken``, ``nolease``,
    ``not ambiguous``)."""

    why: str


@dataclass(frozen=True, slots=True)
class ProofTaken:
    """An SMS the reconciler found is another call's proof: look again without it."""

    ovh_id: int


@dataclass(frozen=True, slots=True)
class SettleFirst:
    """An attempt still calling with the same receiver and text may own an SMS found: it settles first."""

    call_id: str


SettleReply = Settled | NotSettled | ProofTaken | SettleFirst


class Settle(scripts.Script[SettleKeys, SettleDocument, SettleReply]):
    NAME = "settle"
    PRELUDE = scripts.SETTLE_PRELUDE
    Keys = SettleKeys

    def reply(self, raw: Any) -> SettleReply:
        kind = scripts.text(raw[0])
        if kind in ("settled", "already"):
            return Settled([scripts.text(status) for status in raw[1:]], again=kind == "already")
        if kind == "taken":
            return ProofTaken(int(raw[1]))
        if kind == "wait":
            return SettleFirst(scripts.text(raw[1]))
        return NotSettled(scripts.text(raw[1]))


# -- reconcile_pick -----------------------------------------------------------------------------


class PickKeys(TypedDict):
    reconcile: str


class PickDocument(TypedDict):
    visibility_ms: int


class Pick(scripts.Script[PickKeys, PickDocument, tuple[str, int]]):
    """``(call id, 0)``, or ``("", next due ms or -1)`` when none is due."""

    NAME = "reconcile_pick"
    Keys = PickKeys

    def reply(self, raw: Any) -> tuple[str, int]:
        call_id = scripts.text(raw[0])
        return (call_id, 0) if call_id else ("", int(float(raw[1])))
