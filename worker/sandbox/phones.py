"""Receiver numbers: which ones the sandbox accepts, and how it reports them.

A receiver is valid when it is written in international form (``+33612345678`` or
``0033612345678``) and ``phonenumbers`` says it is a valid number. Valid receivers are reported
back normalized to E.164 (``+33612345678``), as OVHcloud's own examples show; invalid ones are
reported exactly as given.
"""

from __future__ import annotations

import re

import phonenumbers

from ..pipeline.receivers import international

_INTERNATIONAL = re.compile(r"(?:\+|00)[1-9][0-9]{5,14}")


def normalize(receiver: str) -> tuple[str, str] | None:
    """``(E.164 number, lower-case region)`` for a valid receiver, else ``None``."""
    if not _INTERNATIONAL.fullmatch(receiver):
        return None
    e164 = "+" + receiver[2:] if receiver.startswith("00") else receiver
    decided = international(e164, e164)
    if decided is not None:
        return None if decided.e164 is None else (e164, (decided.region or "").lower())
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    region = phonenumbers.region_code_for_number(number) or ""
    return e164, region.lower()
