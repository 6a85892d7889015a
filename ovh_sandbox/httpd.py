"""HTTP plumbing: the stdlib's threading server, HTTP/1.1 keep-alive, socket-level faults.

The stdlib server is used on purpose rather than an ASGI stack: the faults need the socket
itself (an RST without an answer, a connection held open after the work is done), and one
thread per connection keeps a python-ovh ``requests`` session's keep-alive connection served
by one thread, simply. Each answer is written in a single ``sendall`` (status line, headers and
body) with Nagle disabled, so small answers are not delayed by delayed ACKs.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ovh_sandbox.handler import Reply, Request

log = logging.getLogger(__name__)

#: Largest request body accepted (bytes).
MAX_BODY = 8 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: SandboxHTTPServer

    def do_GET(self) -> None:
        self._serve()

    # Other methods go through the same path, so they too get an OVH-style 404 and a query id.
    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _serve(self) -> None:
        length_header = self.headers.get("Content-Length") or "0"
        if not length_header.isdigit():
            self.close_connection = True
            self._write(Reply(400, {"class": "Client::BadRequest", "message": "Invalid Content-Length"}))
            return
        length = int(length_header)
        if length > MAX_BODY:
            self._write(Reply(413, {"class": "Client::RequestEntityTooLarge", "message": "Body too large"}))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        request = Request(self.command, self.path, self.headers, body, host)  # type: ignore[arg-type]
        reply = self.server.dispatch(request)
        if reply.action == "reset":
            self._reset()
        elif reply.action == "hold":
            self._hold()
        else:
            self._write(reply)

    def _write(self, reply: Reply) -> None:
        if reply.html is not None:
            payload, content_type = reply.html.encode(), "text/html; charset=utf-8"
        else:
            payload = json.dumps(reply.body, ensure_ascii=False, separators=(",", ":")).encode()
            content_type = "application/json; charset=utf-8"
        phrase = HTTPStatus(reply.status).phrase if reply.status in HTTPStatus._value2member_map_ else ""
        lines = [f"HTTP/1.1 {reply.status} {phrase}", f"Content-Type: {content_type}"]
        lines += [f"Content-Length: {len(payload)}", "Server: ovh-sms-sandbox"]
        reply.headers.setdefault("X-Ovh-QueryId", "EU.sandbox-transport")  # refused before dispatch
        lines += [f"{name}: {value}" for name, value in reply.headers.items()]
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)

    def _reset(self) -> None:
        """Close with an RST and no answer (SO_LINGER 0), as a crashing proxy would."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.wfile.close()
        self.connection.close()

    def _hold(self) -> None:
        """Never answer: wait until the client gives up, the hold time passes or the sandbox stops."""
        self.close_connection = True
        deadline = time.monotonic() + self.server.hold_s()
        while not self.server.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            readable, _, _ = select.select([self.connection], [], [], min(remaining, 0.1))
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        break  # the client closed its end
                except OSError:
                    break
                time.sleep(0.05)  # pipelined bytes: keep ignoring them

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        dispatch: Callable[[Request], Reply],
        hold_s: Callable[[], float],
        stopping: threading.Event,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.dispatch = dispatch
        self.hold_s = hold_s
        self.stopping = stopping
        self._connections: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        self._track = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), name="sandbox-conn", daemon=True
        )
        with self._track:
            self._connections.add(request)
            self._conn_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            if not self.stopping.is_set():
                log.debug("sandbox: connection from %s ended with an error", client_address, exc_info=True)
        finally:
            self.shutdown_request(request)
            with self._track:
                self._connections.discard(request)
                self._conn_threads.discard(threading.current_thread())

    def close_connections(self, timeout: float = 2.0) -> None:
        """Wake every connection thread (their blocking reads end) and wait for them."""
        with self._track:
            connections = list(self._connections)
            threads = list(self._conn_threads)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def server_close(self) -> None:
        # ThreadingMixIn.server_close joins the threads it tracked; these are tracked here.
        socketserver.TCPServer.server_close(self)
