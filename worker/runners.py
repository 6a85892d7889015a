"""Thread runners for the worker's background jobs.

``Periodic`` runs one job in a daemon thread every few seconds; ``Background`` starts and stops a
set of them with the worker (``worker.background_jobs`` builds them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from worker.errors import GatewayError, NoSlot

log = logging.getLogger(__name__)


class Periodic:
    """``job`` in a daemon thread: at once, then every ``every_s`` seconds (or after the delay
    the job returns), until stopped. A failing run is logged; the next one tries again."""

    def __init__(self, name: str, job: Callable[[], float | None], every_s: float) -> None:
        self.name = name
        self.job = job
        self.every_s = every_s
        self.runs = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            delay: float | None = None
            try:
                delay = self.job()
            except NoSlot as exc:  # the send lanes had every slot: expected under load or at start
                log.info("%s: %s; trying again in %g s", self.name, exc, self.every_s)
            except (GatewayError, redis.RedisError) as exc:
                log.warning("%s: %s; trying again in %g s", self.name, exc, self.every_s)
            except Exception:
                log.exception("%s failed; trying again in %g s", self.name, self.every_s)
            self.runs += 1
            stop.wait(self.every_s if delay is None else delay)


class Background:
    """Starts and stops the worker's background jobs (one thread each)."""

    def __init__(self, jobs: list[Periodic]) -> None:
        self.jobs = jobs
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        for job in self.jobs:
            thread = threading.Thread(target=job.run, args=(self._stop,), name=f"sms-{job.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask every job to stop and wait for the one run in progress (a call waits at most its timeouts)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()
