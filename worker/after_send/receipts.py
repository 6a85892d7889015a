"""What OVH's delivery codes mean: the status of a report, and the ptt table.

OVH reports an SMS's state with a DLR code (``dlr`` in the account's callback, ``description`` in
an API user's, ``deliveryReceipt`` in ``GET .../outgoing/{id}``: 0, 4, 8 pending; 1 delivered;
2 failed; 16 error, not billed) and a ``ptt`` code (the operator's detail; OVHcloud's SMS users
guide lists them, ``GET /sms/ptts?ptt=`` describes each). The status of a report:

=============  ==============================================================  =====
status         when                                                            final
=============  ==============================================================  =====
delivered      DLR 1, or ptt 4                                                  yes
expired        ptt 8 (the SMS outlived its validity period)                      yes
unknown        ptt 6 (the operator gave no final status and will not)            yes
failed         DLR 2 or 16, or a failure ptt (5, 20-29, 33, 39, 73...)           yes
pending        anything else: DLR 0, 4, 8, ptt 0-3, or codes not known yet        no
=============  ==============================================================  =====

The DLR code is read first (a ``dlr`` 1 is delivered whatever the ptt says).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.store import keys

#: ptt code -> (description, duration), from OVHcloud's SMS users guide (non-exhaustive). The
#: duration is ``sms.PttDurationTypeEnum``: whether a failure is worth a retry. Used until OVH's
#: own description (``GET /sms/ptts``) is cached, and when OVH does not know a code.
BUILTIN_PTTS: dict[int, tuple[str, str]] = {
    1: ("Not delivered yet: a phone-related problem, delivery is being retried", "temporary"),
    2: ("Not delivered yet: an operator-related problem, delivery is being retried", "temporary"),
    3: ("Accepted by the operator", "temporary"),
    4: ("Delivered", "permanent"),
    5: ("Undelivered, no detailed information about the failure is known", "permanent"),
    6: ("Cannot tell whether it was delivered: no final status from the operator", "indeterminated"),
    8: ("Expired within the operator's SMSC, no reason for failure", "permanent"),
    20: ("Undeliverable in its current form", "permanent"),
    21: ("Expired for lack of subscriber credit", "permanent"),
    23: ("Incorrect, invalid, blacklisted or permanently barred number for this operator", "permanent"),
    24: ("Subscriber temporarily absent (phone off, out of reach)", "temporary"),
    25: ("Temporary condition in the operator network", "temporary"),
    26: ("Temporary phone-related error (SIM card full, memory exceeded...)", "temporary"),
    27: ("Handset permanently unable to receive this type of message", "permanent"),
    28: ("Rejected on suspicion of spam", "permanent"),
    29: ("Content not permitted on the network or shortcode", "permanent"),
    33: ("Adult content refused by a parental lock", "permanent"),
    39: ("New operator failure", "permanent"),
    73: ("Ported combinations unreachable", "permanent"),
    74: ("Number roaming", "permanent"),
    76: ("Ported combinations blocked for the client (blacklisted at the ported destination)", "permanent"),
    202: ("Ported combinations blocked for the client: contact support", "permanent"),
}

#: DLR codes: delivered, failed, pending.
DLR_DELIVERED = {1}
DLR_FAILED = {2, 16}
#: ptt codes of an SMS on its way.
PTT_PENDING = {0, 1, 2, 3}
#: Largest ptt and DLR codes accepted (OVH's are small integers).
MAX_PTT = 9999
MAX_DLR = 255


def classify(ptt: int | None, dlr: int | None) -> tuple[str, bool]:
    """``(status, final)`` of a report with these codes (see the module's table)."""
    if dlr in DLR_DELIVERED or ptt == 4:
        return "delivered", True
    if ptt == 8:
        return "expired", True
    if ptt == 6:
        return "unknown", True
    if dlr in DLR_FAILED or (ptt is not None and ptt not in PTT_PENDING and ptt >= 5):
        return "failed", True
    return "pending", False


def parse_date(text: str | None) -> float | None:
    """OVH's ``date`` of a report as unix seconds: ISO 8601, ``YYYY-MM-DD HH:MM:SS`` (UTC when no
    offset is given), ``YYYYMMDDHHMMSS`` or unix seconds; None when it is none of these."""
    if not text:
        return None
    text = text.strip()
    try:
        value = float(text)
        if 0 < value < 1e11:
            return value
    except ValueError:
        pass
    for parse in (datetime.fromisoformat, lambda t: datetime.strptime(t, "%Y%m%d%H%M%S")):
        try:
            moment = parse(text)
        except ValueError:
            continue
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return None


@dataclass(frozen=True, slots=True)
class PttInfo:
    description: str | None
    duration: str | None  # permanent, temporary or indeterminated

    def permanent(self, status: str) -> bool | None:
        """For a failed or expired SMS: whether the failure is permanent; None otherwise."""
        if status not in ("failed", "expired") or self.duration is None:
            return None
        return self.duration == "permanent"


class PttTable:
    """Descriptions of ptt codes: OVH's own, once the worker cached them (``keys.PTTS``), else
    the built-in ones. Codes seen that OVH has not described yet are collected in ``wanted`` for
    the worker to fetch. The owner loads the cache (``load``) now and then; lookups never wait
    on Redis or OVH. Thread-safe."""

    def __init__(self) -> None:
        self._cached: dict[int, PttInfo] = {}
        self._wanted: set[int] = set()
        self._lock = threading.Lock()

    def load(self, raw: dict[Any, Any]) -> None:
        """Replace the cached descriptions with ``HGETALL keys.PTTS``."""
        cached = {}
        for code, value in raw.items():
            try:
                data = json.loads(value)
                cached[int(code)] = PttInfo(data.get("description"), data.get("duration"))
            except (ValueError, TypeError, AttributeError):
                continue
        with self._lock:
            self._cached = cached

    def describe(self, ptt: int | None) -> PttInfo:
        if ptt is None:
            return PttInfo(None, None)
        with self._lock:
            found = self._cached.get(ptt)
            if found is None:
                self._wanted.add(ptt)
        if found is not None and found.description is not None:
            return found
        builtin = BUILTIN_PTTS.get(ptt)  # not cached yet, or unknown to OVH
        return PttInfo(*builtin) if builtin else PttInfo(None, None)

    def take_wanted(self) -> set[int]:
        """Codes seen since the last call that are not cached (to add to ``keys.PTTS_WANTED``)."""
        with self._lock:
            wanted, self._wanted = self._wanted, set()
            return wanted - set(self._cached)


#: How long codes asked for stay in ``keys.PTTS_WANTED`` (seconds).
PTTS_WANTED_TTL_S = 86_400


def ask_for_wanted(pipe: Any, wanted: set[int]) -> None:
    """Queue on ``pipe`` (a sync or asyncio pipeline) the commands adding ``wanted`` (not empty)
    to ``keys.PTTS_WANTED``, for the worker's ptt job to fetch."""
    pipe.sadd(keys.PTTS_WANTED, *sorted(wanted))
    pipe.expire(keys.PTTS_WANTED, PTTS_WANTED_TTL_S)


def ptt_entry(details: dict[str, Any]) -> str:
    """``keys.PTTS``'s value for OVH's ``sms.PttDetails``."""
    return json.dumps({"description": details.get("description"), "duration": details.get("duration")})
