"""From a contact row to a ``SendRequest``, or to the reason it cannot be sent.

Each row is its own request, ``campaign-<campaign id>/<line>``: the id is derived, not drawn,
so running the same command again after a crash or Ctrl-C gives every row the id it had, and
the worker, which remembers every accepted id (``SMS_WORKER_DEDUPE_TTL_S``), sends nothing
twice. The campaign id is a digest of the file's path and size, the message and the tag, unless
given (``--campaign-id``): an edited file is a new campaign unless its id is given again.

A row is rejected, not fatal, when its number is missing or not a phone number, when the
message uses a variable the row leaves empty, or when the merged text is too long for OVH (more
than 6 parts with the STOP mention, or the contract's 918 characters); the checks are the
worker's own (``worker.phones``, ``worker.accounting.credits``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts.models import PLACEHOLDER, SendRequest, describe_validation_error
from contracts.wire import MAX_MESSAGE_CHARS
from worker import phones
from worker.accounting import credits
from worker.campaigns.contacts import Contact
from worker.errors import UsageError
from worker.intake import mailmerge

#: A campaign id given on the command line: safe in a request id and in a Redis key.
CAMPAIGN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def derive_campaign_id(path: Path, size: int | None, message: str, tag: str | None) -> str:
    """16 hex digits of SHA-256 over the file's absolute path and size, the message and the tag."""
    parts = [str(path.resolve()), str(size), message, tag or ""]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


#: How the summary prints a campaign id (``campaign-<id>``), and how its request ids and default tag begin.
CAMPAIGN_PREFIX = "campaign-"


def check_campaign_id(campaign_id: str) -> str:
    """The id of ``--campaign-id``, given bare or as the summary prints it (``campaign-<id>``):
    both name the same campaign, so resuming with the printed id sends nothing twice."""
    bare = campaign_id.removeprefix(CAMPAIGN_PREFIX)
    if not CAMPAIGN_ID.match(bare):
        raise UsageError(f"--campaign-id {campaign_id!r}: 1 to 64 of A-Z a-z 0-9 . _ - (after campaign-)")
    return bare


def request_id(campaign_id: str, line: int) -> str:
    """The request id of a row: ``campaign-<id>/<line>`` (matches ``BASE_REQUEST_ID_PATTERN``)."""
    return f"{CAMPAIGN_PREFIX}{campaign_id}/{line}"


@dataclass(frozen=True, slots=True)
class Campaign:
    """What every request of a campaign shares (``SendRequest`` fields; ``None``: the worker's default)."""

    campaign_id: str
    message: str
    tag: str
    default_region: str
    priority: str = "low"
    sender: str | None = None
    user: str | None = None
    service_name: str | None = None
    no_stop_clause: bool = False
    start_at: datetime | None = None  # aware; None: send now
    differed_period: int = 0  # minutes, from start_at at the time of queueing (see ``at``)

    def at(self, now: datetime) -> Campaign:
        """The campaign as queued at ``now`` (aware): ``differed_period`` the whole minutes left
        until ``start_at`` (OVH's differedPeriod counts from the call; 0 once it is past)."""
        if self.start_at is None:
            return self
        minutes = max(math.ceil((self.start_at - now).total_seconds() / 60), 0)
        return self if minutes == self.differed_period else dataclasses.replace(self, differed_period=minutes)

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The message's variables, each once, in order."""
        return tuple(dict.fromkeys(PLACEHOLDER.findall(self.message)))

    def check_columns(self, variables: tuple[str, ...], path: Path) -> None:
        """Refuse, before anything is sent, a message naming a variable the file has no column for."""
        missing = [name for name in self.placeholders if name not in variables]
        if missing:
            columns = ", ".join(variables) or "none"
            raise UsageError(
                f"the message uses #{missing[0]}# but {path} has no {missing[0]!r} column (its variables: {columns})"
            )

    def check(self) -> None:
        """Refuse options no row could be sent with (a bad sender, tag, login...) once, not per row."""
        sample = "+33600000000"
        try:
            SendRequest(
                message=self.message,
                receivers=[sample],
                variables={sample: {name: "x" for name in self.placeholders}} if self.placeholders else None,
                **self.fields(),
            )
        except ValidationError as exc:
            raise UsageError(describe_validation_error(exc)[1]) from None

    def fields(self) -> dict[str, Any]:
        values = {
            "priority": self.priority,
            "sender": self.sender,
            "user": self.user,
            "service_name": self.service_name,
            "differed_period": self.differed_period,
            "no_stop_clause": self.no_stop_clause,
            "tag": self.tag,
        }
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Ready:
    """A row that can be sent: its request, receiver (E.164) and destination country."""

    line: int
    request: SendRequest
    receiver: str
    country: str
    parts: int


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


def build(campaign: Campaign, contact: Contact, *, number_index: int, columns: dict[str, int]) -> Ready | Rejected:
    """The row's request, or why it cannot be sent. ``columns``: variable name -> field index."""
    line = contact.line
    if contact.extra:
        return Rejected(line, f"more fields than the header has columns ({contact.extra[0]!r} is extra)")
    number = contact.fields[number_index]
    if not number:
        return Rejected(line, "no phone number")
    receiver = phones.normalize(number, campaign.default_region)
    if receiver.e164 is None or receiver.region is None:
        return Rejected(line, f"{number!r}: {receiver.reason}")
    values = {name: contact.fields[columns[name]] for name in campaign.placeholders}
    empty = [name for name, value in values.items() if not value]
    if empty:
        return Rejected(line, f"no value for #{empty[0]}#")
    text = mailmerge.render(campaign.message, values)
    if len(text) > MAX_MESSAGE_CHARS:
        return Rejected(line, f"message too long once merged: {len(text)} characters, at most {MAX_MESSAGE_CHARS}")
    try:
        parts = credits.estimate(text, no_stop_clause=campaign.no_stop_clause).parts
    except credits.MessageTooLong as exc:
        return Rejected(line, f"message too long once merged: {exc}")
    try:
        request = SendRequest(
            request_id=request_id(campaign.campaign_id, line),
            message=campaign.message,
            receivers=[receiver.e164],
            variables={receiver.e164: values} if values else None,
            metadata={"campaign": campaign.campaign_id, "line": line},
            **campaign.fields(),
        )
    except ValidationError as exc:
        return Rejected(line, describe_validation_error(exc)[1])
    return Ready(line, request, receiver.e164, receiver.region, parts)
