"""How many SMS parts (and so credits) a text costs, computed the way OVH bills it.

GSM 03.38 texts (``gsm0338`` codec; extension characters such as ``€`` take two septets):
160 in one SMS, 153 per part when concatenated. Anything else is UCS-2, counted in UTF-16
code units (an emoji takes two): 70, then 67 per part. Commercial SMS (``noStopClause`` false)
get OVH's STOP mention appended first. More than ``MAX_PARTS`` parts cannot be sent.

This is the worker's own implementation; the sandbox has an independent one, and
``tests/test_credits.py`` checks they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

#: What OVH appends to a commercial SMS (noStopClause false): the French legal opt-out mention.
STOP_MENTION = "\nSTOP au 36111"

#: Most concatenated parts OVH sends for one SMS.
MAX_PARTS = 6

GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


class MessageTooLong(ValueError):
    """The text needs more than ``MAX_PARTS`` parts."""


@dataclass(frozen=True, slots=True)
class Estimate:
    characters: int  # septets (GSM) or UTF-16 code units (UCS-2), STOP mention included
    encoding: str  # "gsm" or "ucs2"
    parts: int


def gsm_length(text: str) -> int | None:
    """Septets ``text`` takes in GSM 03.38, or ``None`` when it cannot be written in it."""
    try:
        return len(text.encode("gsm03.38"))
    except UnicodeEncodeError:
        return None


def estimate(message: str, *, no_stop_clause: bool) -> Estimate:
    """Parts OVH will bill for ``message``; raises ``MessageTooLong`` past ``MAX_PARTS``."""
    text = message if no_stop_clause else message + STOP_MENTION
    septets = gsm_length(text)
    if septets is not None:
        length, single, per_part, encoding = septets, GSM_SINGLE, GSM_PART, "gsm"
    else:
        length, single, per_part, encoding = len(text.encode("utf-16-le")) // 2, UCS2_SINGLE, UCS2_PART, "ucs2"
    parts = 1 if length <= single else math.ceil(length / per_part)
    if parts > MAX_PARTS:
        limit = single if MAX_PARTS == 1 else per_part * MAX_PARTS
        raise MessageTooLong(
            f"message needs {parts} SMS parts ({length} {'GSM characters' if encoding == 'gsm' else 'UCS-2 characters'}"
            f"{'' if no_stop_clause else ' with the STOP mention'}); at most {MAX_PARTS} parts ({limit}) can be sent"
        )
    return Estimate(length, encoding, parts)
