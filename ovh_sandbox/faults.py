"""Faults on demand: latency, error answers, resets, accepted-then-timed-out, a rate limit.

A :class:`FaultRule` fires either with a ``probability`` (drawn from a generator seeded at start,
so a run is reproducible for the same sequence of calls) or on each of the ``next`` N matching
calls. Its ``scope`` is ``"jobs"`` (``POST .../jobs`` only, the default) or ``"all"`` (every
call of the OVH surface); with a ``receiver``, only jobs calls sending to that number match (one
code's call under a campaign). Rules are tried in order; the first that fires wins.

Kinds: ``"500"``, ``"502"``, ``"503"`` (JSON error, nothing done), ``"429"`` (with
``Retry-After``), ``"proxy_503"`` and ``"proxy_429"`` (the same statuses with an HTML body, as
a load balancer in front of OVH answers: python-ovh cannot decode it),
``"reset"`` (the socket is closed with an RST before anything is done),
``"timeout_after_accept"`` (the call is carried out, then the answer never comes: the
connection is held until the client leaves or ``hold_s`` passes), ``"slow"`` (OVH takes its
time: the call waits ``delay_s`` seconds, or a time drawn uniformly from ``delay_s`` to
``delay_max_s``, then is carried out and answered as usual; a client that gave up meanwhile
gets nothing, but its SMS are sent all the same).

The per-consumer-key rate limit is a token bucket: ``rate_limit_per_s`` tokens a second, at
most ``rate_limit_burst`` saved up (default: one second's worth); a call without a token is
answered 429 with ``Retry-After`` set to the whole seconds until the next token.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("500", "502", "503", "429", "proxy_503", "proxy_429", "reset", "timeout_after_accept", "slow")
SCOPES = ("jobs", "all")

#: How long (seconds) an accepted-then-timed-out call holds its connection at most.
DEFAULT_HOLD_S = 30.0

_MAX_LATENCY_MS = 120_000

#: Longest a ``slow`` call may be made to wait (seconds).
_MAX_DELAY_S = 600.0


class FaultConfigError(ValueError):
    """A fault setting that does not make sense (the control API answers it with 400)."""


@dataclass
class FaultRule:
    kind: str
    probability: float | None = None
    next: int | None = None
    scope: str = "jobs"
    retry_after: float = 1.0
    delay_s: float = 5.0  # "slow": how long the call waits before it is carried out (seconds)
    delay_max_s: float | None = None  # "slow": if set, the wait is drawn in [delay_s, delay_max_s]
    receiver: str | None = None  # only jobs calls sending to this number match

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultConfigError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if (self.probability is None) == (self.next is None):
            raise FaultConfigError("give exactly one of probability and next")
        if self.probability is not None and not (_is_number(self.probability) and 0.0 <= self.probability <= 1.0):
            raise FaultConfigError("probability must be a number between 0 and 1")
        if self.next is not None and not (
            isinstance(self.next, int) and not isinstance(self.next, bool) and self.next >= 1
        ):
            raise FaultConfigError("next must be an integer >= 1")
        if self.scope not in SCOPES:
            raise FaultConfigError(f"scope must be one of {', '.join(SCOPES)}")
        if not (_is_number(self.retry_after) and 0 <= self.retry_after <= 3600):
            raise FaultConfigError("retry_after must be a number of seconds between 0 and 3600")
        if not (_is_number(self.delay_s) and 0 <= self.delay_s <= _MAX_DELAY_S):
            raise FaultConfigError(f"delay_s must be a number of seconds between 0 and {_MAX_DELAY_S:g}")
        if self.delay_max_s is not None and not (
            _is_number(self.delay_max_s) and self.delay_s <= self.delay_max_s <= _MAX_DELAY_S
        ):
            raise FaultConfigError(f"delay_max_s must be a number of seconds between delay_s and {_MAX_DELAY_S:g}")
        if self.receiver is not None and not (isinstance(self.receiver, str) and self.receiver):
            raise FaultConfigError("receiver must be a phone number as the jobs call gives it")

    @classmethod
    def from_dict(cls, data: Any) -> FaultRule:
        if not isinstance(data, dict):
            raise FaultConfigError("a fault is an object with at least 'kind'")
        fields = {"kind", "probability", "next", "scope", "retry_after", "delay_s", "delay_max_s", "receiver"}
        unknown = set(data) - fields
        if unknown:
            raise FaultConfigError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if "kind" not in data:
            raise FaultConfigError("a fault needs a 'kind'")
        return cls(**data)


@dataclass(frozen=True)
class Decision:
    kind: str
    retry_after: float
    delay_s: float = 0.0  # "slow": how long this call waits before it is carried out


class Faults:
    """The fault settings of one sandbox; thread-safe."""

    def __init__(
        self,
        *,
        seed: int = 0,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        rules: list[FaultRule] | None = None,
        rate_limit_per_s: float | None = None,
        rate_limit_burst: float | None = None,
        hold_s: float = DEFAULT_HOLD_S,
    ) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._rng = random.Random(seed)
        self._buckets: dict[str, tuple[float, float]] = {}
        self.latency_ms = 0.0
        self.jitter_ms = 0.0
        self.rules: list[FaultRule] = []
        self.rate_limit_per_s: float | None = None
        self.rate_limit_burst: float | None = None
        self.hold_s = DEFAULT_HOLD_S
        self.configure(
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            rules=rules or [],
            rate_limit_per_s=rate_limit_per_s,
            rate_limit_burst=rate_limit_burst,
            hold_s=hold_s,
        )

    def configure(self, **settings: Any) -> None:
        """Change the given settings (``rules`` replaces the list); validates everything first."""
        allowed = {"latency_ms", "jitter_ms", "rules", "rate_limit_per_s", "rate_limit_burst", "hold_s"}
        unknown = set(settings) - allowed
        if unknown:
            raise FaultConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        for name in ("latency_ms", "jitter_ms"):
            if name in settings and not (_is_number(settings[name]) and 0 <= settings[name] <= _MAX_LATENCY_MS):
                raise FaultConfigError(f"{name} must be a number between 0 and {_MAX_LATENCY_MS}")
        if "hold_s" in settings and not (_is_number(settings["hold_s"]) and 0 <= settings["hold_s"] <= 3600):
            raise FaultConfigError("hold_s must be a number of seconds between 0 and 3600")
        for name in ("rate_limit_per_s", "rate_limit_burst"):
            value = settings.get(name)
            if value is not None and not (_is_number(value) and value > 0):
                raise FaultConfigError(f"{name} must be a positive number or null")
        rules = settings.get("rules")
        if rules is not None:
            rules = [r if isinstance(r, FaultRule) else FaultRule.from_dict(r) for r in rules]
        with self._lock:
            for name, value in settings.items():
                setattr(self, name, rules if name == "rules" else value)
            if "rate_limit_per_s" in settings or "rate_limit_burst" in settings:
                self._buckets.clear()

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self.rules.append(rule)

    def clear(self) -> None:
        """No latency, no fault, no rate limit; the hold time and the generator are kept."""
        with self._lock:
            self.latency_ms = self.jitter_ms = 0.0
            self.rules = []
            self.rate_limit_per_s = self.rate_limit_burst = None
            self._buckets.clear()

    def reseed(self) -> None:
        with self._lock:
            self._rng = random.Random(self._seed)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "latency_ms": self.latency_ms,
                "jitter_ms": self.jitter_ms,
                "faults": [asdict(rule) for rule in self.rules],
                "rate_limit_per_s": self.rate_limit_per_s,
                "rate_limit_burst": self.rate_limit_burst,
                "hold_s": self.hold_s,
            }

    def latency_s(self) -> float:
        with self._lock:
            jitter = self._rng.uniform(0.0, self.jitter_ms) if self.jitter_ms else 0.0
            return (self.latency_ms + jitter) / 1000.0

    def pick(self, is_jobs_post: bool, receivers: Any = None) -> Decision | None:
        """The fault for this call, if one fires; consumes a ``next`` count when it does.

        ``receivers``: a jobs call's ``receivers`` as it sent them (for rules with a ``receiver``).
        """
        with self._lock:
            for rule in self.rules:
                if rule.scope == "jobs" and not is_jobs_post:
                    continue
                if rule.receiver is not None and not (
                    is_jobs_post and isinstance(receivers, list) and rule.receiver in receivers
                ):
                    continue
                if rule.next is not None:
                    rule.next -= 1
                    if rule.next == 0:
                        self.rules.remove(rule)
                    return self._decide(rule)
                if self._rng.random() < (rule.probability or 0.0):
                    return self._decide(rule)
        return None

    def _decide(self, rule: FaultRule) -> Decision:
        """(under the lock) The decision of a rule that fired; a slow call's wait drawn here."""
        delay_s = rule.delay_s
        if rule.kind == "slow" and rule.delay_max_s is not None:
            delay_s = self._rng.uniform(rule.delay_s, rule.delay_max_s)
        return Decision(rule.kind, rule.retry_after, delay_s if rule.kind == "slow" else 0.0)

    def take_token(self, consumer_key: str, now: float) -> int | None:
        """``None`` when the key may call now, else the ``Retry-After`` seconds to answer."""
        with self._lock:
            rate = self.rate_limit_per_s
            if rate is None:
                return None
            burst = self.rate_limit_burst or max(1.0, rate)
            tokens, last = self._buckets.get(consumer_key, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[consumer_key] = (tokens - 1.0, now)
                return None
            self._buckets[consumer_key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / rate))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
