"""Waiting in tests: on a condition, with a deadline, never a sleep standing in for one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float = 30.0, what: str = "the condition", every: float = 0.05) -> T:
    """``check()``'s first truthy value, asked every ``every`` seconds; past ``timeout`` seconds
    the test fails saying ``what`` did not happen and what ``check()`` returned last."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last seen: {value!r:.300})")
        time.sleep(every)
