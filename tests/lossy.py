"""A Redis client that loses chosen replies: the command runs on the (real) Redis server, and
its reply never reaches the caller, as after a stall past redis-py's socket timeout or a
connection dropped on the way back. redis-py then does what it does in production: it
reconnects and sends the command again (its default retry), or raises.

A seam on the client's connection class, not a mock: every command reaches the real server.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import redis

from worker.store.scripts import Script


class LostReplies:
    """Which replies to lose: the next ``times`` runs of a script (``lose(steps.Claim)``); and
    which to deliver late: the next run's, ``seconds`` after Redis ran it (``late``), as a network
    or a proxy holding it for less than the client's socket timeout would."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._late: dict[str, float] = {}
        self._names: dict[str, str] = {}
        self.lost: list[str] = []  # script names whose reply was lost, in order
        self.delayed: list[str] = []  # script names whose reply came late, in order

    def late(self, script: type[Script[Any, Any, Any]], seconds: float) -> None:
        sha = self._register(script)
        with self._lock:
            self._late[sha] = seconds

    def lateness(self, command: tuple[Any, ...]) -> float:
        """Seconds the reply to ``command`` is held back (0: none)."""
        sha = _evalsha(command)
        if sha is None:
            return 0.0
        with self._lock:
            seconds = self._late.pop(sha, 0.0)
            if seconds:
                self.delayed.append(self._names[sha])
            return seconds

    def lose(self, script: type[Script[Any, Any, Any]], times: int = 1) -> None:
        sha = self._register(script)
        with self._lock:
            self._pending[sha] = self._pending.get(sha, 0) + times

    def take(self, command: tuple[Any, ...]) -> bool:
        sha = _evalsha(command)
        if sha is None:
            return False
        with self._lock:
            left = self._pending.get(sha, 0)
            if left <= 0:
                return False
            self._pending[sha] = left - 1
            self.lost.append(self._names[sha])
            return True

    def _register(self, script: type[Script[Any, Any, Any]]) -> str:
        """The SHA1 ``script`` runs under (EVALSHA), remembered with its name for the records."""
        sha = hashlib.sha1(script.text().encode()).hexdigest()
        with self._lock:
            self._names[sha] = script.NAME
        return sha


def _evalsha(command: tuple[Any, ...]) -> str | None:
    """The script SHA1 of an EVALSHA ``command`` (None for any other command)."""
    if len(command) < 2 or str(command[0]).upper() != "EVALSHA":
        return None
    return command[1].decode() if isinstance(command[1], bytes) else str(command[1])


def lossy_client(url: str, lost: LostReplies) -> redis.Redis:
    """A client of ``url`` whose connections lose the replies ``lost`` asks for."""

    class Connection(redis.Connection):
        def send_command(self, *args: Any, **kwargs: Any) -> None:
            self._last_command = args
            super().send_command(*args, **kwargs)

        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            response = super().read_response(*args, **kwargs)
            command = getattr(self, "_last_command", ())
            if lost.take(command):
                raise redis.TimeoutError("the reply was lost (injected by the test)")
            time.sleep(lost.lateness(command))  # the injected fault: a reply held on its way back
            return response

    pool = redis.ConnectionPool.from_url(url, connection_class=Connection)
    return redis.Redis(connection_pool=pool)
