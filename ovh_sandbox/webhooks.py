"""The calls OVH makes back: delivery receipts to ``callBack``, replies to ``smsResponse``'s
``cgiUrl``, STOPs to ``stopCallBack``, each from background threads, as OVH does.

- **Delivery**: when an SMS's receipt moves (handed to the operator, then final), the API user's
  or the account's ``callBack`` is called with GET, OVH's parameters added to the URL's query
  string (``state.delivery_callback`` says which URL and which parameters).
- **Replies and STOPs**: ``reply`` (control API) or a seeded reaction makes an SMS reach the
  account; its form fields are POSTed to the ``cgiUrl``, and a STOP also calls ``stopCallBack``
  with GET (OVH does not document that call's parameters; the sandbox sends the same fields).
- **At least once**: a call that fails (connection error, 5xx, 429) is tried again, up to
  ``MAX_TRIES`` times, ``RETRY_BASE_S`` doubling between tries. A 2xx or another 4xx ends it.
- **Duplicates and reordering on demand** (``configure``): ``duplicates`` extra copies of every
  call; ``reorder`` sends an SMS's final receipt before the earlier one.

Times come from the sandbox's clock; the threads poll their schedule every ``TICK_S``.
"""

from __future__ import annotations

import functools
import heapq
import http.client
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from ovh_sandbox import delivery
from ovh_sandbox.state import SandboxState, Sms

log = logging.getLogger(__name__)

#: Tries of one call before it is given up.
MAX_TRIES = 5
#: Wait before the second try (seconds); doubled for each later one.
RETRY_BASE_S = 0.2
#: Timeout of one call (seconds).
CALL_TIMEOUT_S = 5.0
#: How often the scheduler looks for due calls (seconds).
TICK_S = 0.01
#: Threads making the calls.
SENDERS = 4
#: Calls kept in the log (``GET /_sandbox/callbacks``), newest last.
LOG_MAX = 200_000
#: Delay of the earlier receipt behind the final one when reordering (seconds).
REORDER_DELAY_S = 0.05


#: A scheduled job: (unix time due, sequence number, job). A plain tuple: compared in C, it keeps
#: the schedule of a 500-receiver call (a thousand pushes) cheap.
_Due = tuple[float, int, Callable[[], object]]


@dataclass
class Call:
    """One HTTP call to make: ``kind`` is delivery, reply or stop."""

    kind: str
    method: str
    url: str
    params: dict[str, str]
    sms_id: int | None = None
    tries: int = 0


class CallbackSender:
    def __init__(
        self,
        state: SandboxState,
        *,
        reply_rate: float = 0.0,
        stop_rate: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.clock = clock
        self.reply_rate = reply_rate
        self.stop_rate = stop_rate
        self.duplicates = 0
        self.reorder = False
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._calls: queue.Queue[Call | None] = queue.Queue()
        self._log: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._schedule, name="sandbox-callbacks", daemon=True)]
        self._threads += [
            threading.Thread(target=self._send, name=f"sandbox-callback-{n}", daemon=True) for n in range(SENDERS)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for _ in range(SENDERS):
            self._calls.put(None)
        for thread in self._threads:
            thread.join(CALL_TIMEOUT_S + 1)
        self._threads = []

    def reset(self) -> None:
        """Forget the calls scheduled and made, and the duplicate/reorder settings."""
        with self._lock:
            self._heap.clear()
            self._log.clear()
            self.duplicates, self.reorder = 0, False
        while True:
            try:
                self._calls.get_nowait()
            except queue.Empty:
                break

    def configure(self, *, duplicates: int | None = None, reorder: bool | None = None) -> dict[str, Any]:
        with self._lock:
            if duplicates is not None:
                self.duplicates = duplicates
            if reorder is not None:
                self.reorder = reorder
            return {"duplicates": self.duplicates, "reorder": self.reorder}

    def calls_made(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._log]

    # -- scheduling ------------------------------------------------------------------------------

    def _at(self, at: float, job: Callable[[], object]) -> None:
        with self._lock:
            heapq.heappush(self._heap, (at, next(self._seq), job))

    def sms_created(self, sms: Sms) -> None:
        """``SandboxState.listener``: schedule the SMS's receipts (and a seeded reaction)."""
        plan = sms.plan
        sent_at, final_at = plan.sent_at, plan.final_at
        if self.reorder:
            sent_at = final_at + REORDER_DELAY_S
        self._at(sent_at, lambda: self._delivery(sms.id, final=False))
        self._at(final_at, lambda: self._delivery(sms.id, final=True))
        if not plan.delivered:
            return
        text = delivery.reaction(
            self.state.seed,
            sms.id,
            commercial=sms.commercial,
            for_response=sms.for_response,
            reply_rate=self.reply_rate,
            stop_rate=self.stop_rate,
        )
        if text is not None:
            low, high = self.state.delivery_delay_s
            service, receiver = sms.service, sms.receiver
            self._at(final_at + (low + high) / 2, lambda: self.reply(service, receiver, text))

    def reply(self, service: str, sender: str, message: str, tag: str | None = None) -> dict[str, Any]:
        """``sender`` writes ``message`` to the account: recorded, then the cgiUrl and (for a STOP)
        the stopCallBack are called. Returns ``{"id", "stop"}``."""
        outcome = self.state.receive(service, sender, message, tag)
        if outcome["cgi"] is not None:
            url, fields = outcome["cgi"]
            self._enqueue(Call("reply", "POST", url, fields))
        if outcome["stop_callback"] is not None:
            url, fields = outcome["stop_callback"]
            self._enqueue(Call("stop", "GET", url, fields))
        return {"id": outcome["id"], "stop": outcome["stop"]}

    def _delivery(self, sms_id: int, *, final: bool) -> None:
        target = self.state.delivery_callback(sms_id, final)
        if target is not None:
            self._enqueue(Call("delivery", "GET", target[0], target[1], sms_id=sms_id))

    def _enqueue(self, call: Call) -> None:
        for _ in range(1 + self.duplicates):
            self._calls.put(Call(call.kind, call.method, call.url, dict(call.params), call.sms_id))

    def _schedule(self) -> None:
        while not self._stop.wait(TICK_S):
            now = self.clock()
            while True:
                with self._lock:
                    if not self._heap or self._heap[0][0] > now:
                        break
                    job = heapq.heappop(self._heap)[2]
                try:
                    job()
                except Exception:
                    log.exception("sandbox: a scheduled callback failed")

    # -- sending ---------------------------------------------------------------------------------

    def _send(self) -> None:
        connections: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        while True:
            call = self._calls.get()
            if call is None or self._stop.is_set():
                break
            call.tries += 1
            status = _perform(call, connections)
            with self._lock:
                self._log.append(
                    {
                        "kind": call.kind,
                        "sms_id": call.sms_id,
                        "url": call.url,
                        "params": call.params,
                        "status": status,
                        "try": call.tries,
                        "time": self.clock(),
                    }
                )
                del self._log[:-LOG_MAX]
            failed = not isinstance(status, int) or status >= 500 or status == 429
            if failed and call.tries < MAX_TRIES:
                self._at(self.clock() + RETRY_BASE_S * 2 ** (call.tries - 1), functools.partial(self._calls.put, call))
        for connection in connections.values():
            connection.close()


def _perform(call: Call, connections: dict[tuple[str, str, int], http.client.HTTPConnection]) -> int | str:
    """Make one call on a kept-alive connection; the HTTP status, or ``"error"``."""
    parts = urlsplit(call.url)
    scheme, host = parts.scheme, parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    key = (scheme, host, port)
    encoded = urlencode(call.params)
    target = parts.path or "/"
    body: bytes | None = None
    headers = {}
    if call.method == "GET":
        query = "&".join(q for q in (parts.query, encoded) if q)
        target += "?" + query if query else ""
    else:
        target += "?" + parts.query if parts.query else ""
        body = encoded.encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    for attempt in range(2):  # a kept-alive connection the server closed meanwhile: reconnect once
        connection = connections.get(key)
        if connection is None:
            factory = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            connection = connections[key] = factory(host, port, timeout=CALL_TIMEOUT_S)
        try:
            connection.request(call.method, target, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.will_close:
                connection.close()
                del connections[key]
            return response.status
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            del connections[key]
            if attempt == 1:
                log.debug("sandbox: %s callback to %s:%s failed: %s", call.kind, host, port, error)
    return "error"
