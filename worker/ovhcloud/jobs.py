"""The shapes of ``POST /sms/{sn}[/users/{login}]/jobs``: its body and OVH's answer, in OVH's names.

``JobBody`` is what receivers must share to go out in one call (the batch key hashes it);
``JobCall`` adds the receivers (``DocumentJobCall``: a document of them, in bulk mode);
``SendingReport`` is OVH's ``sms.SmsSendingReport``. Typed
here once, so the body built at accept, kept in Redis with a batch and an attempt, and sent by
the gateway is one shape everywhere (``sms.json``, ``POST /sms/{serviceName}/jobs``).
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class JobBody(TypedDict):
    """The call body without receivers. Optional fields are left out when unset."""

    message: str
    priority: str  # OVH's sms.PriorityEnum: high, medium, low, veryLow
    validityPeriod: int  # minutes
    noStopClause: bool  # False: a commercial SMS (OVH appends its STOP mention)
    senderForResponse: bool
    sender: NotRequired[str]
    differedPeriod: NotRequired[int]  # minutes
    tag: NotRequired[str]


class JobCall(JobBody):
    """A whole call body: the shared part and the receivers (E.164, each at most once)."""

    receivers: list[str]


class DocumentJobCall(JobBody):
    """A bulk call body (``worker.campaigns.bulk``): the receivers are a CSV document OVH fetches;
    OVH merges its columns into ``#column#`` placeholders and answers without SMS ids."""

    receiversDocumentUrl: str


class SendingReport(TypedDict, total=False):
    """OVH's ``sms.SmsSendingReport``: ``ids`` in the order of ``validReceivers``."""

    ids: list[int]
    validReceivers: list[str]
    invalidReceivers: list[str]
    totalCreditsRemoved: float
    tag: str
