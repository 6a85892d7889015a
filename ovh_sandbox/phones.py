"""Receiver numbers: which ones the sandbox accepts, and how it reports them.

A receiver is valid when it is written in international form (``+33612345678`` or
``0033612345678``) and ``phonenumbers`` says it is a valid number. Valid receivers are reported
back normalized to E.164 (``+33612345678``), as OVHcloud's own examples show; invalid ones are
reported exactly as given.

Written apart from the worker on purpose (nothing of ``worker`` is imported): the sandbox is the
oracle the worker's own number handling is checked against.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

_INTERNATIONAL = re.compile(r"(?:\+|00)[1-9][0-9]{5,14}")


@functools.lru_cache(maxsize=262_144)  # pure; benchmarks send the same numbers many times
def normalize(receiver: str) -> tuple[str, str] | None:
    """``(E.164 number, lower-case region)`` for a valid receiver, else ``None``."""
    if not _INTERNATIONAL.fullmatch(receiver):
        return None
    e164 = "+" + receiver[2:] if receiver.startswith("00") else receiver
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    region = phonenumbers.region_code_for_number(number) or ""
    return e164, region.lower()
