"""The one retry layer (tenacity): what is retried, how long, and never where it could send twice.

- OVH calls (``call_with_retries``): only ``RetryableError`` (connect errors, 429, 503: surely
  not carried out), within a time budget (per lane: seconds for a one-time code, minutes for
  bulk), never starting a wait that would end past it, honouring ``Retry-After``, exponential
  backoff with jitter otherwise. ``AmbiguousError`` is never retried here: the call may have been carried out, so
  only a reconciliation may decide to send again.
- Redis (``until_redis_answers``): steps that are idempotent (staging a pack, recording OVH's
  answer, settling) are retried through an outage of up to ``outage_s`` seconds (a failover,
  a restart), so a Redis blip never turns a known outcome into an unknown one.

Both stop waiting at once when the worker is asked to stop (``stop``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_before_delay,
    stop_never,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from worker.errors import RetryableError

T = TypeVar("T")

log = logging.getLogger(__name__)

#: What a Redis outage looks like to redis-py.
REDIS_OUTAGE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.ReadOnlyError)


class _stop_on(stop_base):
    """Stop retrying once ``event`` is set (the worker is stopping)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.event.is_set()


def _sleeper(stop: threading.Event | None) -> Callable[[float], None]:
    if stop is None:
        return time.sleep

    def sleep(seconds: float) -> None:
        stop.wait(seconds)  # returns at once when the worker is asked to stop

    return sleep


def _wait(max_wait_s: float) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential(multiplier=0.2, max=max_wait_s) + wait_random(0, 0.2)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:
            return min(max(float(retry_after), 0.0), max_wait_s)
        return float(backoff(state))

    return wait


def call_with_retries(
    fn: Callable[[], T],
    *,
    budget_s: float,
    max_wait_s: float,
    attempts: int | None = None,
    stop: threading.Event | None = None,
) -> T:
    """Run ``fn``, retrying ``RetryableError`` while the next try would start within ``budget_s``
    seconds of the first (and, if given, up to ``attempts`` tries in all); re-raises the last
    error (also when ``stop`` is set during a wait: the caller tells by looking at ``stop``)."""
    give_up = stop_before_delay(budget_s) | (_stop_on(stop) if stop is not None else stop_never)
    if attempts is not None:
        give_up = give_up | stop_after_attempt(attempts)
    retrying = Retrying(
        retry=retry_if_exception_type(RetryableError),
        stop=give_up,
        wait=_wait(max_wait_s),
        sleep=_sleeper(stop),
        reraise=True,
    )
    return retrying(fn)


def until_redis_answers(fn: Callable[[], T], *, outage_s: float, what: str, stop: threading.Event | None = None) -> T:
    """Run ``fn``, retrying Redis connection errors for up to ``outage_s`` seconds (backoff to 2 s);
    re-raises the last error after that, or at once when ``stop`` is set.

    Tried once before any retry loop is built: the send path runs this for every pack staged and
    every call settled, and tenacity's machinery costs more than the Redis step that succeeds.
    The loop then gets what is left of ``outage_s``.
    """
    started = time.monotonic()
    try:
        return fn()
    except REDIS_OUTAGE:
        if stop is not None and stop.is_set():
            raise
    left_s = max(outage_s - (time.monotonic() - started), 0.0)

    def warn(state: RetryCallState) -> None:
        if state.attempt_number in (1, 10) or state.attempt_number % 60 == 0:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s: Redis does not answer (%s); trying again", what, exc)

    retrying = Retrying(
        retry=retry_if_exception_type(REDIS_OUTAGE),
        stop=stop_after_delay(left_s) | (_stop_on(stop) if stop is not None else stop_never),
        wait=wait_exponential(multiplier=0.05, max=2.0) + wait_random(0, 0.1),
        sleep=_sleeper(stop),
        before_sleep=warn,
        reraise=True,
    )
    return retrying(fn)
