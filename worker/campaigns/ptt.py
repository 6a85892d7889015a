"""What OVH's ptt codes mean, for grouping a campaign's failures.

OVH tells it (``GET /sms/ptts?ptt=``: ``sms.PttDetails`` with ``description`` and ``duration``,
permanent or temporary: whether sending again may help); each code is read once and kept in
Redis (``keys.PTTS``), so reports cost no OVH call after the first. Without OVH (no credentials,
no answer) the codes OVH's SMS users guide lists (seed ``000_eb94a71cf784512e``) are used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from worker.errors import GatewayError
from worker.store import keys

log = logging.getLogger(__name__)

#: OVH's SMS users guide: code -> (description, duration as sms.PttDurationTypeEnum).
KNOWN: dict[str, tuple[str, str]] = {
    "1": ("not yet delivered: phone-related problem, delivery being re-tried", "temporary"),
    "2": ("not yet delivered: operator-related problem, delivery being re-tried", "temporary"),
    "3": ("accepted by the operator", "temporary"),
    "4": ("delivered", "permanent"),
    "5": ("undelivered, no detail known", "permanent"),
    "6": ("cannot tell whether delivered: no final status from the operator", "indeterminated"),
    "8": ("expired within the operator's SMSC", "permanent"),
    "20": ("undeliverable in its current form", "permanent"),
    "21": ("subscriber credit problem, message expired", "permanent"),
    "23": ("invalid, blacklisted or permanently barred number", "permanent"),
    "24": ("subscriber temporarily absent", "temporary"),
    "25": ("temporary condition in the operator network", "temporary"),
    "26": ("temporary phone-related error (SIM full, memory exceeded...)", "temporary"),
    "27": ("handset permanently unable to receive this message", "permanent"),
    "28": ("rejected on suspicion of spam", "permanent"),
    "29": ("content not permitted on the network or short code", "permanent"),
    "33": ("adult content refused by a parental lock", "permanent"),
    "39": ("new operator failure", "permanent"),
    "73": ("ported combinations unreachable", "permanent"),
    "74": ("number roaming", "permanent"),
    "76": ("ported combinations blocked for the client", "permanent"),
    "202": ("ported combinations blocked for the client: contact support", "permanent"),
}


@dataclass(frozen=True, slots=True)
class Meaning:
    code: str
    description: str
    duration: str  # permanent, temporary, indeterminated, or unknown
    source: str  # ovh, guide, or none


class PttMeanings:
    """``meaning(code)``; ``client`` keeps what OVH said (``None``: nothing kept), ``fetch(path,
    **params)`` is an OVH GET (``OvhGateway.get``), or ``None`` for the guide's meanings only."""

    def __init__(self, client: redis.Redis | None, fetch: Callable[..., Any] | None) -> None:
        self.redis = client
        self.fetch = fetch
        self._memo: dict[str, Meaning] = {}

    def meaning(self, code: str) -> Meaning:
        if code not in self._memo:
            self._memo[code] = self._look_up(code)
        return self._memo[code]

    def _look_up(self, code: str) -> Meaning:
        if not code.isdigit():
            return Meaning(code, "no ptt in the delivery report", "unknown", "none")
        cached = self.redis.hget(keys.PTTS, code) if self.redis is not None else None
        details: dict[str, Any] | None = json.loads(cached) if cached is not None else None
        if details is None and self.fetch is not None:
            try:
                details = self.fetch("/sms/ptts", ptt=int(code))
            except GatewayError as exc:
                log.info("ptt %s not read from OVH (%s): using the guide's meaning", code, exc.message)
            else:
                if self.redis is not None:
                    self.redis.hset(keys.PTTS, code, json.dumps(details))
        if isinstance(details, dict) and details.get("description"):
            return Meaning(code, str(details["description"]), str(details.get("duration") or "unknown"), "ovh")
        known = KNOWN.get(code)
        if known is not None:
            return Meaning(code, known[0], known[1], "guide")
        return Meaning(code, "not a code OVH's guide lists", "unknown", "none")
