"""Reading a callback's parameters: strict about what matters, tolerant of the rest.

OVH's callbacks are documented loosely (see README): a delivery callback carries ``id`` and some
of ``ptt``, ``dlr``, ``description`` (the DLR code, in an API user's callback), ``descriptionDlr``,
``date``, ``receiver``, ``sender``; a reply (``smsResponse`` cgi) posts ``senderid``, ``message``,
``id``, ``tag``, ``shortcode``. Parameters come from the query string and, for a POST, from a
form body; extra parameters are ignored, empty ones count as absent, a name given twice with two
values is refused. What is used is checked (types, ranges, lengths); a failure raises
``BadCallback`` and the caller answers 400 without repeating any of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.after_send.events import Receipt, Reply
from worker.after_send.receipts import MAX_DLR, MAX_PTT, parse_date

#: Most parameters one callback may carry (OVH sends fewer than ten).
MAX_FIELDS = 50
#: Form bodies accepted besides an empty one.
FORM = "application/x-www-form-urlencoded"

#: Account names as OVH spells them (``sms-ab12345-1``).
SERVICE_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
#: OVH's ids of incoming SMS: digits as far as is known; a little more is let through.
INCOMING_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
_DIGITS = re.compile(r"[0-9]{1,3}")


class BadCallback(ValueError):
    """The callback cannot be read; the message is for logs only (never sent back)."""


def fields(query: str, body: bytes, content_type: str) -> dict[str, str]:
    """The parameters of a callback: query string and form body together."""
    pairs = _pairs(query, "query")
    if body:
        if content_type != FORM:
            raise BadCallback(f"unsupported body type {content_type[:40]!r}")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadCallback("body is not UTF-8") from None
        pairs += _pairs(text, "body")
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in found and found[name] != value:
            raise BadCallback(f"parameter {name[:40]!r} given twice")
        if value != "":
            found[name] = value
    return found


def _pairs(text: str, where: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCallback(f"unreadable {where}: {type(exc).__name__}") from None


class _Params(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=256)


class _Delivery(_Params):
    id: int = Field(gt=0, lt=2**63)
    ptt: int | None = Field(default=None, ge=0, le=MAX_PTT)
    dlr: int | None = Field(default=None, ge=0, le=MAX_DLR)
    description: str | None = None
    descriptionDlr: str | None = None
    date: str | None = Field(default=None, max_length=64)
    receiver: str | None = Field(default=None, max_length=32)


class _Reply(_Params):
    senderid: str = Field(max_length=32)
    message: str = Field(default="", max_length=1600)
    id: str | None = Field(default=None, pattern=INCOMING_ID_PATTERN)
    tag: str | None = Field(default=None, max_length=128)
    shortcode: str | None = Field(default=None, max_length=32)
    service: str | None = Field(default=None, pattern=SERVICE_PATTERN)


class _Stop(_Params):
    number: str = Field(max_length=32)
    message: str | None = Field(default=None, max_length=1600)
    id: str | None = Field(default=None, pattern=INCOMING_ID_PATTERN)
    tag: str | None = Field(default=None, max_length=128)
    service: str | None = Field(default=None, pattern=SERVICE_PATTERN)


M = TypeVar("M", bound=_Params)


def _model(model: type[M], values: dict[str, str]) -> M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadCallback(f"{'.'.join(str(p) for p in first['loc'])}: {first['type']}") from None


def delivery(values: dict[str, str]) -> Receipt:
    """A delivery callback: ``id`` and at least a ptt or a DLR code (``dlr``, or ``description``
    when it is one, as API users' callbacks send it)."""
    params = _model(_Delivery, values)
    dlr = params.dlr
    if dlr is None and params.description is not None and _DIGITS.fullmatch(params.description):
        dlr = int(params.description)
    if params.ptt is None and dlr is None:
        raise BadCallback("neither ptt nor a DLR code")
    return Receipt(
        ovh_id=params.id,
        ptt=params.ptt,
        dlr=dlr,
        source="callback",
        dlr_description=params.descriptionDlr,
        reported_at=parse_date(params.date),
        receiver=params.receiver,
    )


def reply(values: dict[str, str]) -> Reply:
    """A reply posted to the ``smsResponse`` cgi URL (``service`` comes from that URL's query)."""
    params = _model(_Reply, values)
    return Reply(
        number=params.senderid,
        via="reply",
        source="callback",
        service=params.service,
        incoming_id=params.id,
        message=params.message,
        tag=params.tag,
        shortcode=params.shortcode,
    )


#: Where the number of a STOP may be: OVH does not document its stopCallBack's parameters, so
#: the reply's name comes first, then the names OVH uses elsewhere.
STOP_NUMBER_NAMES = ("senderid", "number", "sender", "receiver")


def stop(values: dict[str, str]) -> Reply:
    """OVH's ``stopCallBack``: a number that answered STOP."""
    number = next((values[name] for name in STOP_NUMBER_NAMES if name in values), None)
    if number is None:
        raise BadCallback("no number")
    params = _model(_Stop, {**values, "number": number})
    return Reply(
        number=params.number,
        via="stop_callback",
        source="callback",
        service=params.service,
        incoming_id=params.id,
        message=params.message,
        tag=params.tag,
    )


Kind = Literal["delivery", "reply", "stop"]
#: The reader of each callback path.
READERS: dict[str, Callable[[dict[str, str]], Receipt | Reply]] = {"delivery": delivery, "reply": reply, "stop": stop}
