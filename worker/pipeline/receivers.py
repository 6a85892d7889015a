"""Receiver numbers: normalize to E.164 with ``phonenumbers``, set aside the invalid ones."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers


@dataclass(frozen=True, slots=True)
class Receiver:
    given: str
    e164: str | None
    reason: str | None = None  # why it is invalid
    region: str | None = None  # ISO country of a valid number (prices it)

    @property
    def valid(self) -> bool:
        return self.e164 is not None


def normalize(raw: str, default_region: str) -> Receiver:
    """E.164 form of ``raw``; numbers without a country code are read in ``default_region``.

    ``00`` international prefixes are accepted, as OVH accepts them.
    """
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        return Receiver(raw, None, f"not a phone number ({exc._msg})")
    if not phonenumbers.is_valid_number(number):
        return Receiver(raw, None, "not a valid phone number")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Receiver(raw, e164, region=phonenumbers.region_code_for_number(number))


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
    """A number fit for logs: its country code and last two digits (``+33*******78``)."""
    digits = number.lstrip("+")
    try:
        country = str(phonenumbers.parse("+" + digits, None).country_code) if number.startswith("+") else ""
    except phonenumbers.NumberParseException:
        country = ""
    hidden = max(len(digits) - len(country) - 2, 0)
    return ("+" + country if country else "") + "*" * hidden + digits[len(digits) - min(2, len(digits)) :]
