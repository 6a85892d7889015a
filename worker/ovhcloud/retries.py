"""The one retry layer (tenacity): short and bounded, only where a retry cannot send twice.

Only ``RetryableError`` is retried (connect errors, 429, 503), honouring ``Retry-After``,
with exponential backoff and jitter otherwise. ``AmbiguousError`` is never retried here: the
call may have been carried out, so only a reconciliation may decide to send again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from ..errors import RetryableError

T = TypeVar("T")


def _wait(max_wait_s: float) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(multiplier=0.2, max=max_wait_s, jitter=0.2)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:
            return min(max(retry_after, 0.0), max_wait_s)
        return backoff(state)

    return wait


def call_with_retries(fn: Callable[[], T], *, attempts: int, max_wait_s: float) -> T:
    """Run ``fn``, retrying ``RetryableError`` up to ``attempts`` tries in all; re-raises the last error."""
    retrying = Retrying(
        retry=retry_if_exception_type(RetryableError),
        stop=stop_after_attempt(attempts),
        wait=_wait(max_wait_s),
        reraise=True,
    )
    return retrying(fn)
