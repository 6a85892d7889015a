"""A TCP proxy in front of Redis that loses the reply of one command after Redis carried it out.

Every connection is relayed both ways, unchanged, except: once armed with a marker (bytes that
appear in one command, such as a key of the settle document), the first non-error reply to a
command carrying the marker is not relayed; both sockets are closed instead. The client then
sees a dropped connection (redis-py ``ConnectionError``) for a command that did apply: the "lost
reply" every Lua step must survive. An error reply (``NOSCRIPT`` before redis-py loads a script)
is relayed and the proxy stays armed.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class LostReplyProxy:
    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._marker: bytes | None = None
        self.dropped = 0
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="lost-reply-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def lose_reply_to(self, marker: bytes) -> None:
        """Lose the reply of the next command carrying ``marker`` that Redis carries out."""
        with self._lock:
            self._marker = marker

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.redis_port))
            with self._lock:
                self._sockets += [client, server]
            watching = threading.Event()  # set while a marked command awaits its reply
            threading.Thread(target=self._upstream, args=(client, server, watching), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client, watching), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket, watching: threading.Event) -> None:
        try:
            while data := client.recv(1 << 20):
                with self._lock:
                    if self._marker is not None and self._marker in data:
                        watching.set()
                server.sendall(data)
        except OSError:
            pass
        _close(client, server)

    def _downstream(self, server: socket.socket, client: socket.socket, watching: threading.Event) -> None:
        try:
            while data := server.recv(1 << 20):
                if watching.is_set():
                    watching.clear()
                    if not data.startswith(b"-"):  # carried out: lose its reply
                        with self._lock:
                            self._marker = None
                            self.dropped += 1
                        break
                client.sendall(data)
        except OSError:
            pass
        _close(client, server)

    def close(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        _close(*sockets)

    def __enter__(self) -> LostReplyProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
