"""Versioned wire models: what services send (``SendRequest``) and what comes back.

Validation is strict (unknown fields, wrong types and out-of-range values are refused) and
every error names its field, so a producer learns at ``send()`` time, and the worker can put the
same message into a ``rejected`` result. Field names are snake_case; the worker maps them to
OVH's camelCase parameters.
"""

from __future__ import annotations

import re
import uuid
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from .wire import (
    CONTRACT_VERSION,
    DEFAULT_LANE,
    DEFAULT_RESULTS_QUEUE,
    MAX_MESSAGE_CHARS,
    MAX_RECEIVERS_PER_REQUEST,
    is_reserved_queue,
)

#: Mail-merge placeholders, as in OVHcloud's cookbook: ``#firstname#``.
PLACEHOLDER = re.compile(r"#([A-Za-z_][A-Za-z0-9_]*)#")

#: Most bytes of JSON accepted in ``metadata`` (it is echoed into every result).
MAX_METADATA_BYTES = 4096

#: Request ids: the producer's idempotency key, safe in Redis keys and logs. ``#<n>`` is
#: reserved for the parts of a split send (``SmsProducer.send``), so a part never takes the id
#: of a request sent earlier.
BASE_REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:/@-]{1,128}$"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:/@-]{1,128}(?:#[1-9][0-9]{0,6})?$"
RequestId = Annotated[str, Field(min_length=1, max_length=136, pattern=REQUEST_ID_PATTERN)]
#: OVH SMS account names (``sms-ab12345-1``) and API user logins: checked before they reach a
#: Redis key or a URL path, so neither can carry ``/``, ``:`` or ``..`` tricks.
SERVICE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
LOGIN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ServiceName = Annotated[str, Field(min_length=1, max_length=64, pattern=SERVICE_NAME_PATTERN)]
Login = Annotated[str, Field(min_length=1, max_length=64, pattern=LOGIN_PATTERN)]
#: Alphanumeric senders are 11 characters at most (OVH); numeric ones are phone numbers.
SENDER_PATTERN = r"^(?:[A-Za-z0-9 ._-]{1,11}|\+?[0-9]{3,15})$"


def _not_reserved(name: str) -> str:
    if is_reserved_queue(name):
        raise ValueError(f"{name!r} is reserved for the worker's own queues (sms.*, *.DQ, *.XQ)")
    return name


QueueName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z_][A-Za-z0-9._-]*$",
        description="a dramatiq queue name; not a worker lane (sms.*) nor a delay or dead-letter queue (*.DQ, *.XQ)",
    ),
    AfterValidator(_not_reserved),
]


class Priority(StrEnum):
    """OVH's ``sms.PriorityEnum``; each value is also a lane of the worker."""

    high = "high"
    medium = "medium"
    low = "low"
    veryLow = "veryLow"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def new_request_id() -> str:
    return uuid.uuid4().hex


class SendRequest(_Model):
    """One send: a message to up to ``MAX_RECEIVERS_PER_REQUEST`` receivers.

    ``request_id`` is the idempotency key: a repeat of an accepted id changes nothing.
    """

    kind: Literal["send_request"] = "send_request"
    version: Literal[1] = CONTRACT_VERSION
    request_id: RequestId = Field(default_factory=new_request_id)
    service_name: ServiceName | None = Field(default=None, description="OVH SMS account; the worker's default if unset")
    user: Login | None = Field(default=None, description="OVH SMS API user login (quota holder)")
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    receivers: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        min_length=1, max_length=MAX_RECEIVERS_PER_REQUEST, description="phone numbers; E.164 preferred"
    )
    variables: dict[str, dict[str, Annotated[str, Field(max_length=320)]]] | None = Field(
        default=None, description="mail merge: receiver (as written in receivers) -> placeholder values"
    )
    sender: str | None = Field(
        default=None, min_length=1, max_length=16, pattern=SENDER_PATTERN, description="declared OVH sender"
    )
    sender_for_response: bool = False
    priority: Priority = Priority(DEFAULT_LANE)
    validity_period: int = Field(default=2880, ge=1, le=2880 * 7, description="minutes")
    differed_period: int = Field(default=0, ge=0, le=60 * 24 * 365, description="minutes")
    no_stop_clause: bool = Field(default=False, description="False marks the SMS commercial: OVH appends STOP")
    tag: str | None = Field(default=None, min_length=1, max_length=128)
    reply_to: QueueName = DEFAULT_RESULTS_QUEUE
    metadata: dict[str, Any] | None = Field(default=None, description="opaque, echoed in results")

    @field_validator("message")
    @classmethod
    def _message_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message is blank")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        import json

        if value is not None and len(json.dumps(value, separators=(",", ":"))) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is larger than {MAX_METADATA_BYTES} bytes of JSON")
        return value

    @model_validator(mode="after")
    def _variables_cover_placeholders(self) -> SendRequest:
        if len(set(self.receivers)) != len(self.receivers):
            raise ValueError("receivers: a receiver is listed twice")
        names = set(PLACEHOLDER.findall(self.message))
        if self.variables is None:
            return self
        if not names:
            raise ValueError("variables: given, but message has no #placeholder#")
        unknown = set(self.variables) - set(self.receivers)
        if unknown:
            raise ValueError(f"variables: {sorted(unknown)[0]!r} is not one of the receivers")
        for receiver in self.receivers:
            missing = names - set(self.variables.get(receiver, {}))
            if missing:
                raise ValueError(f"variables: receiver {receiver!r} has no value for #{sorted(missing)[0]}#")
        return self

    @property
    def lane(self) -> str:
        return self.priority.value


#: Every ``ErrorInfo.code`` the worker writes: the request's own faults (``rejected``), refusals
#: that go away (``rate_unknown``: send it again), OVH's (``ovh_error``) and ours.
ERROR_CODES: tuple[str, ...] = (
    "invalid_request",
    "no_valid_receivers",
    "message_too_long",
    "quota_exceeded",
    "account_credits_exhausted",
    "rate_unknown",
    "sender_not_allowed",
    "blacklisted",
    "internal_error",
    "ovh_error",
    "outcome_unknown",
    "campaign_cancelled",
)


class ErrorInfo(_Model):
    """Why a request (or a receiver) was not sent."""

    code: str = Field(description="machine-readable: " + ", ".join(ERROR_CODES))
    message: str
    field: str | None = Field(default=None, description="the request field at fault, dotted")
    ovh_class: str | None = Field(default=None, description="python-ovh exception class name")
    ovh_query_id: str | None = None
    credits_needed: float | None = Field(default=None, description="credits the request needed (quota refusals)")
    credits_left: float | None = Field(default=None, description="credits the quota or account had left")


class ReceiverOutcome(_Model):
    """What became of one receiver. ``blacklisted``: a commercial send (``no_stop_clause`` false) to
    a number that opted out (STOP) or is on the account's OVH blacklist: never sent, nothing spent."""

    receiver: str = Field(description="E.164 when it could be normalized, else as given")
    status: Literal["sent", "invalid", "failed", "unknown", "blacklisted"]
    ovh_id: int | None = Field(default=None, description="OVH outgoing SMS id when sent")
    reason: str | None = None


class SendResult(_Model):
    """The one terminal result of a request.

    ``status``: ``sent`` every valid receiver was accepted by OVH; ``partial`` some were, some
    failed; ``failed`` none was accepted because OVH or the network refused; ``unknown`` a call
    may have been carried out by OVH and the worker could not find out within
    ``SMS_WORKER_RECONCILE_DEADLINE_S`` (an ambiguous call is first reconciled against OVH's
    records: found receivers are ``sent``, receivers proven absent are sent again); ``rejected``
    nothing was sent because the request itself could not be (validation, no valid receiver,
    quota); ``cancelled`` nothing was sent because its campaign was cancelled first
    (``sms-worker campaign cancel``: only rows of a campaign carry it).

    ``deferred_until``: a commercial send (``no_stop_clause`` false) accepted in the quiet hours
    was held by the worker until then (unix seconds) rather than handed to OVH to hold.
    """

    kind: Literal["send_result"] = "send_result"
    version: Literal[1] = CONTRACT_VERSION
    request_id: str
    status: Literal["sent", "partial", "failed", "unknown", "rejected", "cancelled"]
    service_name: str | None = None
    user: str | None = None
    receivers: list[ReceiverOutcome] = Field(default_factory=list)
    credits: float = Field(default=0.0, description="credits OVH removed for this request")
    error: ErrorInfo | None = None
    tag: str | None = None
    metadata: dict[str, Any] | None = None
    accepted_at: float | None = Field(default=None, description="unix seconds")
    deferred_until: float | None = Field(
        default=None, description="unix seconds: held by the worker for the quiet hours of commercial sends until then"
    )
    finished_at: float = Field(description="unix seconds")


class CreditUsage(_Model):
    """Credits of one OVH jobs call (or of a refund), for accounting."""

    kind: Literal["credit_usage"] = "credit_usage"
    version: Literal[1] = CONTRACT_VERSION
    call_id: str
    service_name: str
    user: str | None = None
    lane: str
    request_ids: list[str]
    receivers: int = Field(ge=0, description="receivers in the call")
    credits_reserved: float = Field(ge=0, description="estimated before the call")
    credits_used: float = Field(ge=0, description="OVH's totalCreditsRemoved")
    credits_refunded: float = Field(ge=0, description="reserved but not used, given back to the quota")
    credits_unconfirmed: float = Field(
        default=0.0,
        ge=0,
        description="reserved credits kept as spent because the call's outcome is unknown (OVH may have debited them)",
    )
    quota_left: float | None = Field(default=None, description="user's quota left after settlement, if it has one")
    at: float = Field(description="unix seconds")


class QuotaAlert(_Model):
    """A user's quota left fell to or below its alert threshold (published once per crossing).

    A *crossing* is a reservation taking the quota left from above the threshold to at or
    below it. The alert re-arms only when the quota is raised (configuration or sync from OVH)
    above the threshold again; refunds do not re-arm it, so a failing burst cannot repeat it.
    """

    kind: Literal["quota_alert"] = "quota_alert"
    version: Literal[1] = CONTRACT_VERSION
    alert_id: str = Field(description="stable id of this crossing: <service>/<user>/<crossing number>")
    service_name: str
    user: str
    quota: float = Field(description="the user's quota of credits")
    alert_threshold: float = Field(description="credits left at or below which the alert fires")
    quota_left: float = Field(description="credits left after the reservation that crossed the threshold")
    request_id: str = Field(description="the request whose reservation crossed the threshold")
    alert_number: str | None = Field(default=None, description="where the alert SMS was sent, if one was")
    alert_request_id: str | None = Field(default=None, description="request id of the alert SMS, if one was sent")
    at: float = Field(description="unix seconds")


#: Statuses of a delivery report: the first four are final, ``pending`` is not.
DeliveryStatus = Literal["delivered", "failed", "expired", "unknown", "pending"]
#: How an event after the send reached the worker: OVH called ``sms-worker inbound`` (``callback``)
#: or the worker polled OVH (``poll``, pull mode).
InboundSource = Literal["callback", "poll"]


class DeliveryReport(_Model):
    """OVH's delivery status of one SMS, mapped back to its request and receiver.

    Published once per (SMS, status); a final status (``delivered``, ``failed``, ``expired``,
    ``unknown``) is never followed by another report of that SMS, so each receiver gets at most
    one final report. ``unknown`` is final: the operator gave no final status (ptt 6).
    """

    kind: Literal["delivery_report"] = "delivery_report"
    version: Literal[1] = CONTRACT_VERSION
    report_id: str = Field(description="stable id of this report: <ovh_id>:<status>; consumers may dedupe on it")
    request_id: str
    receiver: str = Field(description="E.164")
    ovh_id: int = Field(description="OVH's id of the SMS")
    service_name: str
    user: str | None = Field(default=None, description="OVH SMS API user login the SMS was sent through")
    tag: str | None = None
    status: DeliveryStatus
    final: bool = Field(description="true for delivered, failed, expired and unknown")
    ptt: int | None = Field(default=None, description="OVH's ptt code (see README, the ptt table)")
    ptt_description: str | None = None
    permanent: bool | None = Field(
        default=None,
        description="failed and expired only: whether OVH says the failure is permanent (not worth a retry)",
    )
    dlr: int | None = Field(
        default=None, description="OVH's deliveryReceipt code: 0, 4, 8 pending; 1 delivered; 2, 16 failed"
    )
    dlr_description: str | None = Field(default=None, max_length=256, description="OVH's text for the DLR status")
    source: InboundSource
    sent_at: float | None = Field(default=None, description="unix seconds: when OVH accepted the SMS (settlement)")
    reported_at: float | None = Field(default=None, description="unix seconds: OVH's date of this status, if given")
    received_at: float = Field(description="unix seconds: when the worker learned of it")


class IncomingSms(_Model):
    """An SMS received on the account (a reply to an SMS sent with ``sender_for_response``, or a STOP).

    ``request_id`` and ``ovh_id`` name the SMS replied to when the number (and the tag, if given)
    match the last SMS the worker sent to that number.
    """

    kind: Literal["incoming_sms"] = "incoming_sms"
    version: Literal[1] = CONTRACT_VERSION
    incoming_id: str = Field(description="OVH's id of the incoming SMS")
    service_name: str | None = Field(default=None, description="OVH SMS account; null when it could not be told")
    sender: str = Field(description="the number that wrote, E.164")
    message: str = Field(max_length=1600)
    tag: str | None = Field(default=None, description="tag of the SMS replied to, as OVH gives it")
    shortcode: str | None = Field(default=None, description="the number written to")
    stop: bool = Field(description="the message is a STOP: an OptOut event follows")
    request_id: str | None = None
    ovh_id: int | None = None
    source: InboundSource
    created_at: float | None = Field(default=None, description="unix seconds: OVH's creation time, if given")
    received_at: float = Field(description="unix seconds")


class OptOut(_Model):
    """A number asked to receive no more commercial SMS (STOP): the worker now refuses commercial
    sends to it on this account (``blacklisted``), as OVH's own blacklist does."""

    kind: Literal["opt_out"] = "opt_out"
    version: Literal[1] = CONTRACT_VERSION
    number: str = Field(description="E.164")
    service_name: str | None = Field(default=None, description="OVH SMS account; null when it could not be told")
    via: Literal["reply", "stop_callback"] = Field(description="a STOP reply, or OVH's stopCallBack")
    incoming_id: str | None = None
    request_id: str | None = Field(default=None, description="the request whose SMS was answered, when known")
    ovh_id: int | None = None
    tag: str | None = None
    source: InboundSource
    at: float = Field(description="unix seconds")


ResultEvent = Annotated[
    SendResult | CreditUsage | QuotaAlert | DeliveryReport | IncomingSms | OptOut, Field(discriminator="kind")
]


def describe_validation_error(exc: Exception) -> tuple[str | None, str]:
    """``(field, message)`` for the first problem of a pydantic ``ValidationError``.

    Field is dotted (``receivers.3``); model-level checks name their field in the message
    prefix (``variables: ...``), which is lifted into ``field`` too.
    """
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError) or not exc.errors():
        return None, str(exc)
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or None
    message = error["msg"].removeprefix("Value error, ")
    if field is None and ": " in message:
        field = message.split(": ", 1)[0]
    return field, f"{field}: {message}" if field and not message.startswith(f"{field}:") else message
