"""What the pipeline reports, in one object: each event counted in the metrics, and its INFO line.

The stages call one method per event (``request_rejected``, ``jobs_call``...), so a stage's
code carries one line per event and nothing about Prometheus or log formats. INFO lines carry
ids and counts as structured fields (``call_id``, ``request_id``, ``lane``...), never a
receiver or a message text. The loops' liveness ticks go through here too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Protocol

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from worker.errors import PermanentError, RetryableError
from worker.ops.health import Liveness
from worker.ops.metrics import Metrics

#: The INFO lines of calls and rejections: one logger, so ops can raise its level alone.
log = logging.getLogger("worker.calls")


class SettlementLike(Protocol):
    """What ``jobs_call`` reads of each request's settlement (``worker.attempts.lifecycle.Settlement``)."""

    @property
    def n_sent(self) -> int: ...
    @property
    def credits(self) -> float: ...
    @property
    def error(self) -> Mapping[str, object] | None: ...


class GrantLike(Protocol):
    """What ``rate_limit_granted`` reads of a grant (``worker.ovhcloud.rate_limit.Grant``)."""

    @property
    def waited_s(self) -> float: ...


def call_outcome(settlements: Sequence[SettlementLike]) -> str:
    """``sent`` (OVH answered with a report), ``failed`` (refused) or ``ambiguous`` (maybe sent)."""
    for settlement in settlements:
        if settlement.error is not None:
            return "ambiguous" if settlement.error.get("code") == "outcome_unknown" else "failed"
    return "sent"


class Telemetry:
    """The events of one app. ``metrics`` and ``liveness`` are the app's own."""

    def __init__(self, metrics: Metrics | None = None, liveness: Liveness | None = None) -> None:
        self.metrics = metrics or Metrics()
        self.liveness = liveness or Liveness()

    # accept

    def requests_accepted(self, lane: str, outcomes: Iterable[str]) -> None:
        """Count the ``staged`` outcomes of one message (duplicates are not new requests)."""
        staged = sum(1 for outcome in outcomes if outcome == "staged")
        if staged:
            self.metrics.requests_accepted.labels(lane).inc(staged)

    def request_rejected(self, request_id: str, lane: str, reason: str) -> None:
        """A request answered ``rejected`` (its result published): one INFO line, no text, no number."""
        self.metrics.requests_rejected.labels(lane, reason).inc()
        self.metrics.results.labels("rejected").inc()
        log.info("request rejected", extra={"request_id": request_id, "lane": lane, "reason": reason})

    def dead_letter(self, queue: str) -> None:
        self.metrics.dead_letters.labels(queue).inc()

    # dispatch

    @contextmanager
    def jobs_try(self, lane: str, *, last: bool) -> Iterator[None]:
        """Time and count one ``POST .../jobs`` try; ``last``: no retry follows a retryable failure."""
        started = time.monotonic()
        outcome = "sent"
        try:
            yield
        except RetryableError:
            outcome = "failed" if last else "retried"
            raise
        except PermanentError:
            outcome = "failed"
            raise
        except BaseException:  # AmbiguousError, or a fault of ours: whether it left is unknown
            outcome = "ambiguous"
            raise
        finally:
            self.metrics.call_duration.observe(time.monotonic() - started)
            self.metrics.jobs_calls.labels(lane, outcome).inc()

    def jobs_call(
        self,
        call_id: str,
        lane: str,
        receivers: int,
        settlements: Sequence[SettlementLike],
        duration_s: float,
        outcome: str | None = None,
    ) -> None:
        """One jobs call done (all its tries): count what OVH accepted and write its INFO line.

        ``outcome`` when the settlements do not tell it (``ambiguous``: handed to reconciliation;
        ``given_back``: not sent; ``fenced_out``: taken over elsewhere)."""
        outcome = outcome or call_outcome(settlements)
        sent = sum(s.n_sent for s in settlements)
        credits = sum(s.credits for s in settlements)
        self.metrics.receivers_per_call.observe(receivers)
        if sent:
            self.metrics.sms_sent.labels(lane).inc(sent)
        if credits:
            self.metrics.credits_used.inc(credits)
        if outcome == "ambiguous":
            self.metrics.ambiguous_calls.inc()
        fields = {
            "call_id": call_id,
            "lane": lane,
            "receivers": receivers,
            "outcome": outcome,
            "sms_sent": sent,
            "credits": round(credits, 6),
            "duration_ms": round(duration_s * 1000, 1),
        }
        log.info("jobs call", extra=fields)

    def results(self, statuses: Iterable[str]) -> None:
        """Results published by a settlement, one status each."""
        for status in statuses:
            self.metrics.results.labels(status).inc()

    def reconciled(self, outcome: str, receivers: int = 1) -> None:
        """Receivers of an ambiguous call reconciled against OVH (``sent``, ``absent``...)."""
        self.metrics.reconciled_receivers.labels(outcome).inc(receivers)

    def breaker_tripped(self) -> None:
        """A bulk campaign paused by its circuit breaker (``worker.campaigns.control``)."""
        self.metrics.breaker_trips.inc()

    def rate_limit_granted(self, grant: GrantLike) -> None:
        """``RateLimiter(on_grant=...)``: how long the slot was waited for."""
        self.metrics.rate_limit_wait.observe(grant.waited_s)

    # liveness

    def tick(self, loop: str) -> None:
        self.liveness.tick(loop)

    def dramatiq_middleware(self) -> Middleware:
        """Counts the messages dramatiq dead-letters (unreadable, or out of retries)."""
        return _DeadLetters(self)


class _DeadLetters(Middleware):
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.telemetry.dead_letter(message.queue_name)
