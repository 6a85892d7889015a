"""A fault-injecting TCP proxy: the network between the workers and Redis, or OVH, made to fail.

``FaultProxy(upstream_host, upstream_port, protocol="resp" | "http")`` listens on a free port of
127.0.0.1 and forwards every connection to the upstream server, one upstream connection per
client connection, until told to misbehave (from any thread; the proxy runs in an asyncio loop
of its own thread):

- ``hold_replies(seconds, matching=None)``: replies the server sends during the next ``seconds``
  reach the client only when that time is over, if the client still listens. Past the client's
  timeout (redis-py's is 5 s) the request was carried out and its reply is lost: what a Redis
  stall, a GC pause or a congested link does to a client.
- ``drop_replies(count=1, matching=None, close=True, after=0)``: the next ``count`` replies
  (past the first ``after``) are swallowed
  although the server carried their request out; with ``close`` the client's connection is then
  closed, so it learns at once that the reply is lost (else it waits for its own timeout).
- ``reset()``: every open connection is closed with an RST, now.
- ``blackhole(seconds, late=False)``: nothing gets through, either way, for ``seconds``; what was
  sent meanwhile is lost and its connection closed when the time is over, or, with ``late``,
  delivered then (a partition that heals: TCP delivers what it had buffered, late).
- ``hold_requests(matching, reset_client=True)``: whole requests matching are kept from the
  server (the client's connection reset, so it knows no answer will come) until
  ``release_requests()`` delivers them, each on a connection of its own, or
  ``discard_requests()`` drops them: a call that reaches OVH only after the client gave up.

``matching`` is a regular expression searched in the request a reply answers: for RESP the
command name, with the script's SHA1 for ``EVALSHA`` (``"EVALSHA"``, or ``f"EVALSHA {sha}"`` for
one script), the request line for HTTP (``"POST .*/jobs"``). The proxy acts on
whole messages (``tests.nemesis.framing``): a fault takes exactly one reply and leaves the
stream well framed, which a byte-level proxy could not promise.

Why written here: toxiproxy (the usual tool) is a Go server this machine cannot get; its Python
client (toxiproxy-python) only drives that server. blockade needs Docker, pynetem needs tc/netem
and root and works on packets, not on messages; pproxy and asynctcpproxy forward without faults.
None can swallow the reply to one ``EVALSHA`` after Redis ran it, which is the fault that
matters here. The proxy is test infrastructure: nothing in ``worker/`` imports it.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from tests.nemesis.framing import (
    FramingError,
    http_request_end,
    http_request_line,
    resp_command_label,
    resp_message_end,
)

Protocol = Literal["resp", "http"]
T = TypeVar("T")

#: How long a delivery of held requests waits for each answer (seconds).
RELEASE_TIMEOUT_S = 30.0
#: How long the proxy waits for the upstream server to accept a connection (seconds).
CONNECT_TIMEOUT_S = 5.0


class _LoopThread:
    """One asyncio loop, in a daemon thread, for every proxy of the test session."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="nemesis-proxy", daemon=True).start()
                cls._loop = loop
            return cls._loop


def _run(coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    return asyncio.run_coroutine_threadsafe(coroutine, _LoopThread.get()).result(timeout)


@dataclass
class _Drop:
    left: int
    pattern: re.Pattern[str] | None
    close: bool
    skip: int = 0  # matching replies let through first


@dataclass(frozen=True)
class _Window:
    until: float  # monotonic
    pattern: re.Pattern[str] | None = None
    late: bool = False


def _pattern(matching: str | None) -> re.Pattern[str] | None:
    return re.compile(matching) if matching is not None else None


def _matches(pattern: re.Pattern[str] | None, label: str) -> bool:
    return pattern is None or pattern.search(label) is not None


class FaultProxy:
    """A TCP proxy to ``upstream_host:upstream_port`` that injects faults on demand (see the module)."""

    def __init__(self, upstream_host: str, upstream_port: int, *, protocol: Protocol, name: str = "proxy") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.protocol = protocol
        self.name = name
        self.stats: Counter[str] = Counter()  # what the proxy did, for a run's figures
        self.errors: list[str] = []  # bytes it could not frame: a test should find none
        self._lock = threading.Lock()
        self._holds: list[_Window] = []
        self._blackholes: list[_Window] = []
        self._drops: list[_Drop] = []
        self._gate: tuple[re.Pattern[str] | None, bool] | None = None
        self._held: list[tuple[str, bytes]] = []
        self._connections: set[_Connection] = set()
        self._server = _run(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port: int = self._server.sockets[0].getsockname()[1]

    # -- what tests call -------------------------------------------------------------------------

    def url(self, scheme: str, path: str = "") -> str:
        """The URL a client uses to go through the proxy, e.g. ``url("redis", "/0")``."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def hold_replies(self, seconds: float, matching: str | None = None) -> None:
        """Replies sent by the server in the next ``seconds`` reach the client only after them."""
        with self._lock:
            self._holds.append(_Window(time.monotonic() + seconds, _pattern(matching)))
            self.stats["hold_replies"] += 1

    def drop_replies(self, count: int = 1, matching: str | None = None, close: bool = True, after: int = 0) -> None:
        """Swallow the next ``count`` replies (to requests ``matching``) after the server acted;
        ``after``: let that many matching replies through first."""
        with self._lock:
            self._drops.append(_Drop(count, _pattern(matching), close, after))
            self.stats["drop_replies"] += 1

    def pending_drops(self) -> int:
        """Replies still to be dropped by ``drop_replies`` calls."""
        with self._lock:
            return sum(drop.left for drop in self._drops)

    def reset(self) -> int:
        """Close every open connection with an RST; how many there were."""

        async def reset_all() -> int:
            connections = list(self._connections)
            for connection in connections:
                connection.close(reset=True)
            return len(connections)

        count = _run(reset_all())
        with self._lock:
            self.stats["reset"] += 1
            self.stats["connections_reset"] += count
        return count

    def blackhole(self, seconds: float, late: bool = False) -> None:
        """Nothing gets through for ``seconds``: lost (connections closed after), or delivered late."""
        with self._lock:
            self._blackholes.append(_Window(time.monotonic() + seconds, late=late))
            self.stats["blackhole"] += 1

    def hold_requests(self, matching: str | None = None, reset_client: bool = True) -> None:
        """Keep whole requests ``matching`` from the server until ``release_requests``."""
        with self._lock:
            self._gate = (_pattern(matching), reset_client)

    def held_requests(self) -> list[str]:
        """Labels of the requests held back, oldest first."""
        with self._lock:
            return [label for label, _ in self._held]

    def release_requests(self) -> int:
        """Stop holding requests; deliver those held, each on its own connection, and wait for each
        answer (the server acted on it by then). How many were delivered."""
        with self._lock:
            self._gate = None
            held, self._held = self._held, []
        return _run(self._deliver(held), timeout=RELEASE_TIMEOUT_S * (len(held) + 1))

    def discard_requests(self) -> int:
        """Stop holding requests; those held never reach the server. How many."""
        with self._lock:
            self._gate = None
            held, self._held = self._held, []
            self.stats["requests_discarded"] += len(held)
        return len(held)

    def clear(self) -> None:
        """No fault from now on (requests held stay held until released or discarded)."""
        with self._lock:
            self._holds.clear()
            self._blackholes.clear()
            self._drops.clear()
            self._gate = None

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for connection in list(self._connections):
                connection.close()
            await self._server.wait_closed()

        _run(stop())

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop's side -------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(self, reader, writer)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)

    async def _deliver(self, held: list[tuple[str, bytes]]) -> int:
        delivered = 0
        for _, request in held:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.upstream), CONNECT_TIMEOUT_S)
            try:
                writer.write(request)
                await writer.drain()
                await asyncio.wait_for(reader.read(1), RELEASE_TIMEOUT_S)  # answered: acted on
                delivered += 1
            finally:
                writer.transport.abort()
        with self._lock:
            self.stats["requests_delivered_late"] += delivered
        return delivered

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.stats[what] += n

    def gate(self, label: str) -> bool | None:
        """``None`` if ``label`` goes through, else whether to reset the client after holding it."""
        with self._lock:
            if self._gate is None or not _matches(self._gate[0], label):
                return None
            return self._gate[1]

    def hold(self, label: str, request: bytes) -> None:
        with self._lock:
            self._held.append((label, request))
            self.stats["requests_held"] += 1

    def take_drop(self, label: str) -> _Drop | None:
        """The drop rule that takes this reply, one of its count consumed; ``None`` if none."""
        with self._lock:
            for drop in self._drops:
                if _matches(drop.pattern, label):
                    if drop.skip > 0:
                        drop.skip -= 1
                        return None
                    drop.left -= 1
                    if drop.left <= 0:
                        self._drops.remove(drop)
                    self.stats["replies_dropped"] += 1
                    return drop
        return None

    def blackholed(self, now: float) -> _Window | None:
        """The blackhole in force, if any (the one ending last)."""
        with self._lock:
            self._blackholes = [w for w in self._blackholes if w.until > now]
            return max(self._blackholes, key=lambda w: w.until, default=None)

    def held_until(self, label: str, now: float) -> float | None:
        with self._lock:
            self._holds = [w for w in self._holds if w.until > now]
            ends = [w.until for w in self._holds if _matches(w.pattern, label)]
        return max(ends, default=None)


class _Connection:
    """One client connection and its upstream twin, pumped message by message."""

    def __init__(self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.resp = proxy.protocol == "resp"
        self.client_reader = reader
        self.client_writer = writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.labels: deque[str] = deque()  # requests forwarded and not answered yet, in order
        self.last_label = ""
        self.swallow = False  # an HTTP reply was dropped: the rest of it (and of the connection) too
        self.closed = False

    async def run(self) -> None:
        try:
            upstream_reader, self.upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.proxy.upstream), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            self.proxy.count("upstream_unreachable")
            self.close(reset=True)
            return
        pumps = {
            asyncio.create_task(self._requests()),
            asyncio.create_task(self._replies(upstream_reader)),
        }
        try:
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for task in pumps:
                if not task.cancelled() and isinstance(task.exception(), FramingError):
                    self.proxy.errors.append(str(task.exception()))
        finally:
            self.close()

    def close(self, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        transport = self.client_writer.transport
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
        if self.upstream_writer is not None:
            self.upstream_writer.transport.abort()

    def _doom(self, until: float) -> None:
        """Bytes of this connection were lost: it is closed once the blackhole is over."""
        delay = max(until - time.monotonic(), 0.0)
        asyncio.get_running_loop().call_later(delay, self.close)

    # -- client to server ------------------------------------------------------------------------

    async def _requests(self) -> None:
        buffer = bytearray()
        while not self.closed:
            data = await self.client_reader.read(65536)
            if not data:
                return
            buffer += data
            while True:
                end = resp_message_end(buffer) if self.resp else http_request_end(buffer)
                if end is None:
                    break
                request = bytes(buffer[:end])
                del buffer[:end]
                await self._forward(request)
                if self.closed:
                    return

    async def _forward(self, request: bytes) -> None:
        label = resp_command_label(request) if self.resp else http_request_line(request)
        reset_client = self.proxy.gate(label)
        if reset_client is not None:
            self.proxy.hold(label, request)
            if reset_client:
                self.close(reset=True)
            return
        window = self.proxy.blackholed(time.monotonic())
        if window is not None:
            if not window.late:
                self.proxy.count("requests_lost")
                self._doom(window.until)
                return
            self.proxy.count("requests_late")
            await asyncio.sleep(window.until - time.monotonic())
        assert self.upstream_writer is not None
        self.labels.append(label)
        self.last_label = label
        self.upstream_writer.write(request)
        await self.upstream_writer.drain()

    # -- server to client ------------------------------------------------------------------------

    async def _replies(self, upstream: asyncio.StreamReader) -> None:
        buffer = bytearray()
        while not self.closed:
            data = await upstream.read(65536)
            if not data:
                return
            if not self.resp:  # HTTP: each read is delivered as it comes, for the latest request
                await self._deliver(self.last_label, data)
                continue
            buffer += data
            while (end := resp_message_end(buffer)) is not None:
                reply = bytes(buffer[:end])
                del buffer[:end]
                await self._deliver(self.labels.popleft() if self.labels else "", reply)
                if self.closed:
                    return

    async def _deliver(self, label: str, reply: bytes) -> None:
        if self.swallow:
            return
        drop = self.proxy.take_drop(label)
        if drop is not None:
            if drop.close:
                self.close()
            elif not self.resp:
                self.swallow = True
            return
        now = time.monotonic()
        window = self.proxy.blackholed(now)
        if window is not None:
            if not window.late:
                self.proxy.count("replies_lost")
                self._doom(window.until)
                return
            await asyncio.sleep(window.until - now)
        until = self.proxy.held_until(label, time.monotonic())
        if until is not None:
            self.proxy.count("replies_held")
            try:
                await asyncio.sleep(until - time.monotonic())
            except asyncio.CancelledError:
                self.proxy.count("replies_lost_while_held")  # the client gave up meanwhile
                raise
        if self.closed:
            self.proxy.count("replies_lost_while_held")
            return
        self.client_writer.write(reply)
        await self.client_writer.drain()
