"""The sandbox's own SMS part counting and destination rates.

Deliberately independent of the worker's estimator (nothing here is imported from elsewhere in
``worker``): a test cross-checks the two, which only means something if they were written apart.

Rules, as OVHcloud's guides state them:

- A text made only of GSM 03.38 characters is sent 7-bit: 160 characters in one SMS, 153 per
  part once concatenated. Characters of the extension table (``^{}\\[~]|€`` and form feed) are
  sent as escape + character and count twice.
- Any other character switches the whole text to UCS-2: 70 in one SMS, 67 per part; the length
  is counted in UTF-16 code units, so a character outside the BMP (most emoji) counts twice.
- A commercial SMS (``noStopClause`` false) gets :data:`STOP_MENTION` appended before counting.
- At most :data:`MAX_PARTS` concatenated parts.

Parts are ``ceil(characters / per_part)``; the sandbox does not model an escape pair or a
surrogate pair being pushed to the next part (neither do OVHcloud's guides).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Appended to commercial SMS (``noStopClause`` false): the French legal opt-out mention.
#: 14 GSM characters (the newline included).
STOP_MENTION = "\nSTOP au 36111"

#: Most concatenated parts OVHcloud sends; a longer text is refused with 400.
MAX_PARTS = 6

#: GSM 03.38 default alphabet (3GPP TS 23.038), one septet each. ESC (0x1B) is left out: it
#: only introduces an extension character. 0x09 is the capital C with cedilla, as in the spec.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

#: GSM 03.38 extension table: escape + character, two septets each.
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM_SINGLE, GSM_PER_PART = 160, 153
UCS2_SINGLE, UCS2_PER_PART = 70, 67


@dataclass(frozen=True)
class Estimate:
    """What one text costs: the fields of ``sms.JobEstimate``."""

    characters: int  # septets (7bits) or UTF-16 code units (unicode), STOP mention included
    characters_class: str  # "7bits" or "unicode" (sms.EncodingEnum)
    max_characters_per_part: int
    parts: int

    def as_job_estimate(self) -> dict[str, object]:
        return {
            "characters": self.characters,
            "charactersClass": self.characters_class,
            "maxCharactersPerPart": self.max_characters_per_part,
            "parts": self.parts,
        }


def full_text(message: str, no_stop_clause: bool) -> str:
    """The text actually sent: the message, plus the STOP mention for a commercial SMS."""
    return message if no_stop_clause else message + STOP_MENTION


def estimate(message: str, no_stop_clause: bool) -> Estimate:
    text = full_text(message, no_stop_clause)
    septets = 0
    for char in text:
        if char in GSM_BASIC:
            septets += 1
        elif char in GSM_EXTENSION:
            septets += 2
        else:
            units = len(text.encode("utf-16-le")) // 2
            return _split(units, "unicode", UCS2_SINGLE, UCS2_PER_PART)
    return _split(septets, "7bits", GSM_SINGLE, GSM_PER_PART)


def _split(characters: int, characters_class: str, single: int, per_part: int) -> Estimate:
    if characters <= single:
        return Estimate(characters, characters_class, single, 1)
    return Estimate(characters, characters_class, per_part, math.ceil(characters / per_part))


@dataclass(frozen=True)
class Rate:
    country: str  # full name, as sms.DestinationRates.country
    credits: float  # credits per SMS part


#: Credits per SMS part by destination (ISO 3166 alpha-2, lower case as ``sms.CountryEnum``).
#: One credit per part to France, as OVHcloud sells them; the others are the sandbox's plausible
#: multipliers (OVHcloud's own vary over time), chosen as halves so sums stay exact.
RATES: dict[str, Rate] = {
    "fr": Rate("France", 1.0),
    "be": Rate("Belgium", 1.5),
    "gb": Rate("United Kingdom", 1.5),
    "de": Rate("Germany", 2.0),
    "es": Rate("Spain", 1.5),
    "it": Rate("Italy", 1.5),
    "pl": Rate("Poland", 1.5),
    "ch": Rate("Switzerland", 2.0),
    "us": Rate("United States", 2.0),
    "ca": Rate("Canada", 2.0),
}

#: Credits per part for any destination not in :data:`RATES`.
DEFAULT_RATE = 3.0

#: Price of one credit in euros, for ``sms.DestinationRates.price``.
CREDIT_PRICE_EUR = 0.06


def rate(country: str) -> float:
    """Credits per part towards ``country`` (ISO alpha-2, any case)."""
    known = RATES.get(country.lower())
    return known.credits if known else DEFAULT_RATE


def country_name(country: str) -> str:
    known = RATES.get(country.lower())
    return known.country if known else country.upper()
