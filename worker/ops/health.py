"""Liveness: the long-running loops of a process (dispatchers, the lease) show they progress.

A loop registers with the longest interval it may legitimately go between two ticks (seconds),
then calls ``tick`` at least that often. ``/healthz`` is healthy while every registered loop
ticked within its interval; a loop stuck longer (a deadlock, a call hung past every timeout)
makes it fail, so Kubernetes restarts the process. A loop that stops on purpose unregisters.
Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stale:
    """A loop that has not ticked within its interval."""

    name: str
    silent_s: float
    max_interval_s: float

    def __str__(self) -> str:
        return f"{self.name} has not ticked for {self.silent_s:.1f} s (limit {self.max_interval_s:g} s)"


class Liveness:
    """Named loops and when each last ticked; thread-safe. ``clock`` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._loops: dict[str, tuple[float, float]] = {}  # name -> (max interval s, last tick)
        self._lock = threading.Lock()

    def register(self, name: str, max_interval_s: float) -> None:
        """Watch loop ``name`` from now on; it counts as having just ticked."""
        if max_interval_s <= 0:
            raise ValueError("max_interval_s must be > 0")
        with self._lock:
            self._loops[name] = (max_interval_s, self._clock())

    def unregister(self, name: str) -> None:
        with self._lock:
            self._loops.pop(name, None)

    def tick(self, name: str) -> None:
        """Loop ``name`` made progress; a tick of an unregistered loop is ignored."""
        with self._lock:
            entry = self._loops.get(name)
            if entry is not None:
                self._loops[name] = (entry[0], self._clock())

    def stale(self) -> list[Stale]:
        """Loops that have not ticked within their interval, longest silent first."""
        now = self._clock()
        with self._lock:
            loops = list(self._loops.items())
        found = [Stale(name, now - last, limit) for name, (limit, last) in loops if now - last > limit]
        return sorted(found, key=lambda s: -s.silent_s)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._loops)
