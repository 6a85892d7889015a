"""Phone numbers, in one place: normalize to E.164 with ``phonenumbers`` (receivers, numbers OVH
reports, numbers that reply), set aside the invalid ones, and mask them for logs."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, REGION_CODE_FOR_NON_GEO_ENTITY, PhoneMetadata
from phonenumbers.phonenumberutil import (
    ValidationResult,
    _maybe_strip_national_prefix_carrier_code,
    _test_number_length,
)


@dataclass(frozen=True, slots=True)
class Receiver:
    given: str
    e164: str | None
    reason: str | None = None  # why it is invalid
    region: str | None = None  # ISO country of a valid number (prices it)

    @property
    def valid(self) -> bool:
        return self.e164 is not None


@functools.lru_cache(maxsize=65_536)  # pure: codes and campaigns repeat numbers
def normalize(raw: str, default_region: str | None) -> Receiver:
    """E.164 form of ``raw``; numbers without a country code are read in ``default_region``
    (``None``: such numbers are invalid).

    ``00`` international prefixes are accepted, as OVH accepts them.
    """
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    return international(raw, text) or by_phonenumbers(raw, text, default_region)


def by_phonenumbers(raw: str, text: str, default_region: str | None) -> Receiver:
    """The reference: phonenumbers' own parse, validation and formatting (~20 us a number)."""
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        return Receiver(raw, None, f"not a phone number ({exc._msg})")
    if not phonenumbers.is_valid_number(number):
        return Receiver(raw, None, "not a valid phone number")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Receiver(raw, e164, region=phonenumbers.region_code_for_number(number))


# A fast path for what producers mostly send: numbers already in international form. Hand-written
# on purpose: phonenumbers has no faster backend, its parse and validation take ~20 us a number
# (a fifth of the accept stage's CPU in a broadcast), and no other maintained Python library
# validates as it does. The path uses phonenumbers' own metadata and its own national-prefix
# stripping, decides only numbers whose country code belongs to a single region (others, and
# everything not "+digits", go to ``by_phonenumbers``), and a property test
# (tests/test_receivers.py) checks it agrees with ``by_phonenumbers`` number for number.

_INTERNATIONAL = re.compile(r"\+([1-9][0-9]{3,16})")
#: The number types a valid number matches one of. Only whether one matches counts here (not
#: which, as in phonenumbers' ``_number_type_helper``), so the common ones are tried first.
_TYPES = (
    "mobile", "fixed_line", "premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager",
    "uan", "voicemail",
)  # fmt: skip
#: What phonenumbers.parse does not strip a national prefix to (it keeps the digits as given).
_KEEP_AS_GIVEN = {ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY, ValidationResult.INVALID_LENGTH}


@dataclass(frozen=True, slots=True)
class _Desc:
    lengths: frozenset[int]
    pattern: re.Pattern[str] | None

    @classmethod
    def of(cls, desc: Any) -> _Desc | None:
        if desc is None:
            return None
        pattern = desc.national_number_pattern
        return cls(frozenset(desc.possible_length or ()), re.compile(pattern) if pattern else None)

    def matches(self, nsn: str) -> bool:
        """phonenumbers' ``_is_number_matching_desc``: the lengths, then the whole pattern."""
        if self.lengths and len(nsn) not in self.lengths:
            return False
        return self.pattern is not None and self.pattern.fullmatch(nsn) is not None


@dataclass(frozen=True, slots=True)
class _Region:
    code: str
    metadata: Any
    general: _Desc | None
    types: tuple[_Desc, ...]
    #: ``national_prefix_for_parsing``, compiled: what ``_maybe_strip_national_prefix_carrier_code``
    #: looks for at the start of a number (it leaves a number that does not start with it as is)
    national_prefix: re.Pattern[str] | None

    def valid(self, nsn: str) -> bool:
        """phonenumbers' ``_number_type_helper(nsn, metadata) != UNKNOWN``."""
        return self.general is not None and self.general.matches(nsn) and any(t.matches(nsn) for t in self.types)


@functools.cache  # one per country code (~250)
def _region_of(country_code: int) -> _Region | None:
    regions = COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
    if len(regions) != 1 or regions[0] == REGION_CODE_FOR_NON_GEO_ENTITY:
        return None
    metadata = PhoneMetadata.metadata_for_region(regions[0])
    if metadata is None:
        return None
    types = tuple(d for d in (_Desc.of(getattr(metadata, name)) for name in _TYPES) if d is not None)
    prefix = metadata.national_prefix_for_parsing
    return _Region(regions[0], metadata, _Desc.of(metadata.general_desc), types, re.compile(prefix) if prefix else None)


def international(raw: str, text: str) -> Receiver | None:
    """``+<digits>`` of a single-region country code, decided as phonenumbers would; else None."""
    match = _INTERNATIONAL.fullmatch(text)
    if match is None:
        return None
    digits = match.group(1)
    for size in (1, 2, 3):
        if int(digits[:size]) in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    region = _region_of(int(digits[:size]))
    nsn = digits[size:]
    if region is None or len(nsn) < 2:
        return None
    # phonenumbers.parse strips a national prefix written after the country code (+33 0612...)
    # when what is left has a possible length (most numbers have none: skip the two calls)
    if region.national_prefix is not None and region.national_prefix.match(nsn):
        _, stripped, _ = _maybe_strip_national_prefix_carrier_code(nsn, region.metadata)
        if _test_number_length(stripped, region.metadata) not in _KEEP_AS_GIVEN:
            nsn = stripped
    if len(nsn) < 2 or len(nsn) > 17:
        return None
    if not region.valid(nsn):
        return Receiver(raw, None, "not a valid phone number")
    return Receiver(raw, f"+{digits[:size]}{nsn}", region=region.code)


def e164(number: str, default_region: str | None = None) -> str | None:
    """``number`` in E.164 (``+33612345678``), or ``None`` when it is not a valid phone number."""
    return normalize(number, default_region).e164


def normalize_all(raws: list[str], default_region: str) -> list[Receiver]:
    """Normalize each receiver; a number already listed (in any spelling) is invalid as a duplicate."""
    seen: set[str] = set()
    out = []
    for raw in raws:
        receiver = normalize(raw, default_region)
        e164 = receiver.e164
        if e164 is not None:
            if e164 in seen:
                receiver = Receiver(raw, None, f"duplicate of {e164}")
            else:
                seen.add(e164)
        out.append(receiver)
    return out


def mask_number(number: str) -> str:
    """A number fit for logs: ``+33612345678`` -> ``+33*******78``, its country code and last 2
    digits kept. Anything that is not an E.164 number keeps only its last 2 characters."""
    digits = number[1:] if number.startswith("+") else None
    if digits is None or not digits.isdigit() or len(digits) < 4:
        return "*" * max(len(number) - 2, 0) + number[-2:]
    code = _country_code_length(digits)
    return "+" + digits[:code] + "*" * (len(digits) - code - 2) + digits[-2:]


def _country_code_length(digits: str) -> int:
    """Length of the ITU country calling code that starts ``digits`` (1 to 3 digits)."""
    for length in (1, 2, 3):
        if phonenumbers.region_code_for_country_code(int(digits[:length])) != phonenumbers.UNKNOWN_REGION:
            return length
    return 1
