"""From what OVH said to the events consumers read: one place for push and pull.

A callback (``worker.after_send.service``) and a poll (``worker.after_send.pull``) both end here: a
``Receipt`` becomes a ``DeliveryReport``, a ``Reply`` an ``IncomingSms`` and/or an ``OptOut``,
each with the Lua call that publishes it once (``report.lua``, ``reply.lua``). Nothing here does
I/O: ``worker.after_send.publish`` runs the calls, synchronously or not.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any, Generic, Literal, NotRequired, TypedDict, TypeVar

from contracts.models import DeliveryReport, IncomingSms, OptOut
from contracts.redis_connection import text
from contracts.wire import RESULT_ACTOR_NAME
from worker.after_send.ptts import PttTable
from worker.after_send.receipts import classify
from worker.phones import e164
from worker.store import keys, scripts

#: Fields of the tracking hash (``keys.sms``) a report needs, in this order.
TRACKED = ("request_id", "receiver", "reply_to", "tag", "service", "login", "sent_at")
#: Fields of the receiver's last-sent hash (``keys.last_sent``) a reply is tied with.
LAST_SENT = ("request_id", "ovh_id", "tag", "reply_to", "service")

#: A reply that opts out: STOP as its first word, in any case, as OVH's mention asks.
_STOP = re.compile(r"\s*stop\b", re.IGNORECASE)

Source = Literal["callback", "poll"]


def is_stop(message: str) -> bool:
    return _STOP.match(message) is not None


KeysT = TypeVar("KeysT")
DocT = TypeVar("DocT")


@dataclass(frozen=True, slots=True)
class ScriptCall(Generic[KeysT, DocT]):
    """One run of a publishing script: its keys, its document, the keys the document refers to."""

    keys: KeysT
    document: DocT
    refs: scripts.KeyRefs


class ReportKeys(TypedDict):
    sms: str  # the SMS's tracking hash (keys.sms), written at settlement
    last_sent: str  # the receiver's (keys.last_sent): ties later replies to this request
    queue: str  # the results queue (the request's reply_to)
    messages: str  # its .msgs hash
    stats: str  # events a capped results queue dropped


class ReportCampaign(TypedDict):
    key: int  # the tag's campaign statistics (keys.campaign_stats)
    ttl_s: int
    ptt: NotRequired[int]
    delivered_at: NotRequired[float]


class ReportDocument(TypedDict):
    status: str
    final: bool
    payload: str  # the DeliveryReport JSON
    ovh_id: str
    queue: str
    queue_cap: int
    actor: str
    message_id: str
    timestamp_ms: int
    reply_window_s: int
    count_poll: bool
    campaign: NotRequired[ReportCampaign]


@dataclass(frozen=True, slots=True)
class Published:
    """``report.lua``'s answer: ``code`` (see ``REPORT_OUTCOMES``) and the SMS's receipt polls so far."""

    code: int
    polls: int


class ReportScript(scripts.Script[ReportKeys, ReportDocument, Published]):
    NAME = "report"
    PRELUDE = scripts.CAMPAIGN_PRELUDE
    Keys = ReportKeys

    def reply(self, raw: Any) -> Published:
        return Published(int(raw[0]), int(raw[1]))


class ReplyKeys(TypedDict):
    optouts: str  # the account's opt-outs (keys.optouts)
    blacklist_gen: str  # the account's blacklist generation (keys.blacklist_gen)
    queue: str  # the results queue both events go to
    messages: str  # its .msgs hash
    stats: str  # events a capped results queue dropped


class ReplyIncoming(TypedDict):
    marker: int  # the incoming SMS's dedupe marker (keys.incoming)
    queue: str
    message_id: str
    payload: str


class ReplyOptOut(TypedDict):
    number: str
    queue: str
    message_id: str
    payload: str


class ReplyDocument(TypedDict):
    queue_cap: int
    actor: str
    timestamp_ms: int
    now_ms: int
    dedupe_ttl_s: int
    keep_ms: int
    incoming: NotRequired[ReplyIncoming]
    optout: NotRequired[ReplyOptOut]
    campaign: NotRequired[int]  # key index of the tag's campaign statistics
    campaign_ttl_s: NotRequired[int]


class ReplyScript(scripts.Script[ReplyKeys, ReplyDocument, tuple[int, int]]):
    """``(incoming published, opt-out published)`` as 1/0."""

    NAME = "reply"
    PRELUDE = scripts.CAMPAIGN_PRELUDE
    Keys = ReplyKeys

    def reply(self, raw: Any) -> tuple[int, int]:
        return int(raw[0]), int(raw[1])


@dataclass(frozen=True, slots=True)
class Receipt:
    """One delivery status of one SMS, as a callback or a poll gave it."""

    ovh_id: int
    ptt: int | None
    dlr: int | None
    source: Source
    dlr_description: str | None = None
    reported_at: float | None = None
    receiver: str | None = None  # the account's callbacks name it (API users' do not)


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMS that reached the account (``via="reply"``), or OVH's stopCallBack for a number."""

    number: str  # the number that wrote, as OVH gave it
    via: Literal["reply", "stop_callback"]
    source: Source
    service: str | None = None  # the account, when the URL or the poll says it
    incoming_id: str | None = None
    message: str | None = None
    tag: str | None = None
    shortcode: str | None = None
    created_at: float | None = None


#: ``report.lua``'s answer -> the outcome counted and logged.
REPORT_OUTCOMES = {1: "published", 0: "unknown_id", -1: "duplicate", -2: "stale"}


def report_call(
    receipt: Receipt,
    tracked: list[Any],
    ptts: PttTable,
    *,
    results_queue: str,
    queue_cap: int,
    campaign_ttl_s: int = 0,
    count_poll: bool = False,
) -> tuple[DeliveryReport, ScriptCall[ReportKeys, ReportDocument]] | None:
    """The report of ``receipt`` and its publication; None when the SMS is not recorded.

    ``tracked``: ``HMGET keys.sms(id) *TRACKED``. The script publishes it once per (SMS, status),
    never after a final status, on the request's ``reply_to`` (else ``results_queue``).
    """
    fields = dict(zip(TRACKED, (None if raw is None else text(raw) for raw in tracked), strict=True))
    request_id, receiver, service = fields["request_id"], fields["receiver"], fields["service"]
    if request_id is None or receiver is None or service is None:
        return None
    status, final = classify(receipt.ptt, receipt.dlr)
    ptt = ptts.describe(receipt.ptt)
    sent_at = fields["sent_at"]
    report = DeliveryReport(
        report_id=f"{receipt.ovh_id}:{status}",
        request_id=request_id,
        receiver=receiver,
        ovh_id=receipt.ovh_id,
        service_name=service,
        user=fields["login"],
        tag=fields["tag"],
        status=status,  # type: ignore[arg-type]
        final=final,
        ptt=receipt.ptt,
        ptt_description=ptt.description,
        permanent=ptt.permanent(status),
        dlr=receipt.dlr,
        dlr_description=receipt.dlr_description,
        source=receipt.source,
        sent_at=float(sent_at) if sent_at else None,
        reported_at=receipt.reported_at,
        received_at=time.time(),
    )
    queue = fields["reply_to"] or results_queue
    document: ReportDocument = {
        "status": status,
        "final": final,
        "payload": report.model_dump_json(exclude_none=True),
        "ovh_id": str(receipt.ovh_id),
        "queue": queue,
        "queue_cap": queue_cap,
        "actor": RESULT_ACTOR_NAME,
        "message_id": f"report:{receipt.ovh_id}:{status}",
        "timestamp_ms": int(report.received_at * 1000),
        "reply_window_s": keys.REPLY_WINDOW_S,
        "count_poll": count_poll,
    }
    names: ReportKeys = {
        "sms": keys.sms(receipt.ovh_id),
        "last_sent": keys.last_sent(receiver),
        "queue": keys.queue(queue),
        "messages": keys.queue_messages(queue),
        "stats": keys.STATS,
    }
    refs = scripts.KeyRefs(offset=len(ReportScript.KEYS))
    if fields["tag"] and campaign_ttl_s > 0:  # the tag's campaign statistics count it (lua/_campaign.lua)
        campaign: ReportCampaign = {"key": refs(keys.campaign_stats(service, fields["tag"])), "ttl_s": campaign_ttl_s}
        if receipt.ptt is not None:
            campaign["ptt"] = receipt.ptt
        if status == "delivered" and receipt.reported_at is not None:
            campaign["delivered_at"] = receipt.reported_at
        document["campaign"] = campaign
    return report, ScriptCall(names, document, refs)


@dataclass(frozen=True, slots=True)
class ReplyEvents:
    """What one ``Reply`` publishes (either may be None) and the script call that does it."""

    incoming: IncomingSms | None
    optout: OptOut | None
    call: ScriptCall[ReplyKeys, ReplyDocument]


class InvalidNumber(ValueError):
    """The number of a reply or a STOP is not a phone number."""


def reply_number(number: str, default_region: str) -> str:
    """The number of a reply in E.164; ``InvalidNumber`` when it is not one."""
    found = e164(number, default_region)
    if found is None:
        raise InvalidNumber("not a valid phone number")
    return found


def reply_call(
    reply: Reply,
    number: str,
    last_sent: list[Any],
    *,
    default_service: str | None,
    results_queue: str,
    dedupe_ttl_s: int,
    queue_cap: int,
    campaign_ttl_s: int = 0,
) -> ReplyEvents:
    """The events of ``reply`` from ``number`` (E.164), tied to the request it answers when the
    receiver's last SMS (``last_sent``: ``HMGET keys.last_sent(number) *LAST_SENT``) has the
    reply's tag (or the reply has none). They go to that request's ``reply_to``, else to
    ``results_queue``. An IncomingSms is published once per (account, incoming id); an OptOut
    (a STOP reply, or a stopCallBack) once per (account, number) while it is remembered.
    """
    last = dict(zip(LAST_SENT, (None if raw is None else text(raw) for raw in last_sent), strict=True))
    tied = last["request_id"] is not None and (not reply.tag or reply.tag == last["tag"])
    service = reply.service or (last["service"] if tied else None) or default_service
    queue = (last["reply_to"] if tied else None) or results_queue
    request_id = last["request_id"] if tied else None
    ovh_id = int(last["ovh_id"]) if tied and last["ovh_id"] else None
    tag = reply.tag or (last["tag"] if tied else None)
    now = time.time()
    scope = service or "-"
    incoming = optout = None
    refs = scripts.KeyRefs(offset=len(ReplyScript.KEYS))
    document: ReplyDocument = {
        "queue_cap": queue_cap,
        "actor": RESULT_ACTOR_NAME,
        "timestamp_ms": int(now * 1000),
        "now_ms": int(now * 1000),
        "dedupe_ttl_s": dedupe_ttl_s,
        "keep_ms": keys.OPTOUT_KEEP_S * 1000,
    }
    incoming_id = reply.incoming_id
    if reply.via == "reply":
        message = reply.message or ""
        if incoming_id is None:  # no id from OVH: the same text from the same number is one reply
            digest = hashlib.sha256(f"{number}|{message}|{reply.tag}|{reply.shortcode}".encode()).hexdigest()
            incoming_id = "h:" + digest[:16]
        incoming = IncomingSms(
            incoming_id=incoming_id,
            service_name=service,
            sender=number,
            message=message,
            tag=tag,
            shortcode=reply.shortcode,
            stop=is_stop(message),
            request_id=request_id,
            ovh_id=ovh_id,
            source=reply.source,
            created_at=reply.created_at,
            received_at=now,
        )
        document["incoming"] = {
            "marker": refs(keys.incoming(scope, incoming_id)),
            "queue": queue,
            "message_id": f"incoming:{scope}:{incoming_id}",
            "payload": incoming.model_dump_json(exclude_none=True),
        }
    if reply.via == "stop_callback" or (incoming is not None and incoming.stop):
        optout = OptOut(
            number=number,
            service_name=service,
            via=reply.via,
            incoming_id=incoming_id,
            request_id=request_id,
            ovh_id=ovh_id,
            tag=tag,
            source=reply.source,
            at=now,
        )
        document["optout"] = {
            "number": number,
            "queue": queue,
            "message_id": f"optout:{scope}:{number}:{int(now * 1000)}",
            "payload": optout.model_dump_json(exclude_none=True),
        }
    names: ReplyKeys = {
        "optouts": keys.optouts(scope),
        "blacklist_gen": keys.blacklist_gen(scope),
        "queue": keys.queue(queue),
        "messages": keys.queue_messages(queue),
        "stats": keys.STATS,
    }
    if optout is not None and tag and service and campaign_ttl_s > 0:  # counted in the tag's campaign statistics
        document["campaign"] = refs(keys.campaign_stats(service, tag))
        document["campaign_ttl_s"] = campaign_ttl_s
    call = ScriptCall(names, document, refs)
    return ReplyEvents(incoming, optout, call)
