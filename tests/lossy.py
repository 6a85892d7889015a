"""A Redis client that loses chosen replies: the command runs on the (real) Redis server, and
its reply never reaches the caller, as after a stall past redis-py's socket timeout or a
connection dropped on the way back. redis-py then does what it does in production: it
reconnects and sends the command again (its default retry), or raises.

A seam on the client's connection class, not a mock: every command reaches the real server.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import redis

from worker.store.scripts import Script


class LostReplies:
    """Which replies to lose: the next ``times`` runs of a script (``lose(steps.Claim)``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self.lost: list[str] = []  # script names whose reply was lost, in order

    def lose(self, script: type[Script[Any, Any, Any]], times: int = 1) -> None:
        sha = hashlib.sha1(script.text().encode()).hexdigest()
        with self._lock:
            self._pending[sha] = self._pending.get(sha, 0) + times
            self._names = {**getattr(self, "_names", {}), sha: script.NAME}

    def take(self, command: tuple[Any, ...]) -> bool:
        if len(command) < 2 or str(command[0]).upper() != "EVALSHA":
            return False
        sha = command[1].decode() if isinstance(command[1], bytes) else str(command[1])
        with self._lock:
            left = self._pending.get(sha, 0)
            if left <= 0:
                return False
            self._pending[sha] = left - 1
            self.lost.append(self._names[sha])
            return True


def lossy_client(url: str, lost: LostReplies) -> redis.Redis:
    """A client of ``url`` whose connections lose the replies ``lost`` asks for."""

    class Connection(redis.Connection):
        def send_command(self, *args: Any, **kwargs: Any) -> None:
            self._last_command = args
            super().send_command(*args, **kwargs)

        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            response = super().read_response(*args, **kwargs)
            if lost.take(getattr(self, "_last_command", ())):
                raise redis.TimeoutError("the reply was lost (injected by the test)")
            return response

    pool = redis.ConnectionPool.from_url(url, connection_class=Connection)
    return redis.Redis(connection_pool=pool)
