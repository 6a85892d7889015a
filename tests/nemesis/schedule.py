"""A seeded schedule of faults, and the thread that carries it out.

A ``Schedule`` is data: when (seconds after the start), on what (a target name: a proxy, the
workers, the Redis server, the sandbox) and what (an action and its parameters). It is drawn
from one seed (``ScheduleBuilder``), so a run that found something is replayed with the same
faults at the same moments: ``NEMESIS_SEED=<seed> pytest tests/test_fault_suite.py -s``. What
the faults hit in the traffic still depends on timing; the schedule does not.

``Nemesis(schedule, handlers).start()`` runs it in a thread: each fault at its time, by the
handler of its target. A handler that raises stops the run, and ``join`` raises it again.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.nemesis.proxy import FaultProxy


@dataclass(frozen=True, order=True)
class Fault:
    at_s: float  # seconds after the schedule starts
    target: str
    action: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.at_s:6.1f} s  {self.target}.{self.action}({args})"


@dataclass(frozen=True)
class Schedule:
    seed: int
    faults: tuple[Fault, ...]

    def __str__(self) -> str:
        return "\n".join([f"nemesis schedule (seed {self.seed}):", *map(str, self.faults)])

    def count(self, target: str, action: str) -> int:
        return sum(1 for f in self.faults if f.target == target and f.action == action)


@dataclass
class ScheduleBuilder:
    """Draws a schedule from ``seed``: every random choice goes through ``rng``."""

    seed: int
    rng: random.Random = field(init=False)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def times(self, n: int, within: tuple[float, float], apart: float = 0.0) -> list[float]:
        """``n`` moments drawn in ``within`` (seconds), at least ``apart`` from one another."""
        low, high = within
        if n and (n - 1) * apart > high - low:
            raise ValueError(f"{n} moments {apart} s apart do not fit in {within}")
        # Draw in the space left once the gaps are set aside, then put the gaps back: uniform,
        # and never a rejection loop.
        slack = sorted(self.rng.uniform(0, high - low - (n - 1) * apart) for _ in range(n))
        return [round(low + s + i * apart, 1) for i, s in enumerate(slack)]

    def uniform(self, low: float, high: float) -> float:
        return round(self.rng.uniform(low, high), 1)

    def add(self, at_s: float, target: str, action: str, **params: Any) -> None:
        self.faults.append(Fault(at_s, target, action, tuple(sorted(params.items()))))

    def build(self) -> Schedule:
        return Schedule(self.seed, tuple(sorted(self.faults)))


Handler = Callable[[Fault], Any]

#: What a schedule may ask of a ``FaultProxy``.
PROXY_ACTIONS = frozenset({"hold_replies", "drop_replies", "reset", "blackhole"})


def proxy_handler(proxy: FaultProxy) -> Handler:
    """The handler of a proxy target: the fault's action is the proxy method of that name."""

    def handle(fault: Fault) -> Any:
        if fault.action not in PROXY_ACTIONS:
            raise ValueError(f"a proxy cannot {fault.action!r}")
        return getattr(proxy, fault.action)(**fault.kwargs)

    return handle


class Nemesis:
    """Carries out a ``Schedule`` in a thread (see the module); ``done`` lists what it did."""

    def __init__(self, schedule: Schedule, handlers: Mapping[str, Handler]) -> None:
        missing = {f.target for f in schedule.faults} - set(handlers)
        if missing:
            raise ValueError(f"no handler for target(s) {sorted(missing)}")
        self.schedule = schedule
        self.handlers = handlers
        self.done: list[tuple[Fault, Any]] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)

    def start(self) -> Nemesis:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        for fault in self.schedule.faults:
            if self._stop.wait(max(self._started + fault.at_s - time.monotonic(), 0.0)):
                return
            try:
                self.done.append((fault, self.handlers[fault.target](fault)))
            except BaseException as error:  # handed to join()
                self._error = error
                return

    def join(self, timeout: float | None = None) -> None:
        """Wait for the schedule's end; raise what a handler raised."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the nemesis schedule did not end in time")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
