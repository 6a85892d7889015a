"""The :class:`Sandbox`: one OVH SMS API emulator served from background threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from ovh_sandbox.auth import DEFAULT_MAX_SKEW_S, FULL_ACCESS, Authenticator
from ovh_sandbox.control import ControlApi, SandboxControl
from ovh_sandbox.faults import DEFAULT_HOLD_S, FaultRule, Faults
from ovh_sandbox.handler import Dispatcher
from ovh_sandbox.httpd import SandboxHTTPServer
from ovh_sandbox.state import DEFAULT_CREDITS, DEFAULT_SERVICE, SandboxState
from ovh_sandbox.webhooks import CallbackSender

#: Default credentials: full access (GET/POST/PUT/DELETE on ``/*``). Fixed, so a sandbox
#: restarted by hand keeps working with the same exported environment.
DEFAULT_APPLICATION_KEY = "sandbox-application-key"
DEFAULT_APPLICATION_SECRET = "sandbox-application-secret"
DEFAULT_CONSUMER_KEY = "sandbox-consumer-key"


class Sandbox:
    """An OVH SMS API emulator; ``port=0`` picks a free port.

    Keyword options (all also settable at run time through :attr:`control`, except the
    credentials, the clock and the delivery model):

    - ``credits``: credits of the default account (``service_name``);
    - ``latency_ms``, ``jitter_ms``: added to every OVH call (jitter uniform in [0, jitter]);
    - ``faults``: fault rules (``FaultRule`` or dicts, see ``faults.py``);
    - ``rate_limit_per_s``, ``rate_limit_burst``: per-consumer-key token bucket answering 429;
    - ``hold_s``: how long an accepted-then-timed-out call holds its connection at most;
    - ``max_skew_s``: largest ``X-Ovh-Timestamp`` difference accepted;
    - ``delivery_delay_s``: (low, high) seconds: an SMS is handed over within ``low`` s and gets
      its final receipt ``low`` to ``high`` s later; ``failure_rate``: share of SMS that fail;
    - ``reply_rate``, ``stop_rate``: share of delivered SMS whose receiver replies (SMS sent with
      ``senderForResponse``) or answers STOP (commercial SMS), drawn from the seed;
    - ``clock``: unix time source (tests of time-dependent behaviour).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        *,
        service_name: str = DEFAULT_SERVICE,
        credits: float = DEFAULT_CREDITS,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        faults: Iterable[FaultRule | dict[str, Any]] = (),
        rate_limit_per_s: float | None = None,
        rate_limit_burst: float | None = None,
        hold_s: float = DEFAULT_HOLD_S,
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        delivery_delay_s: tuple[float, float] = (0.5, 3.0),
        failure_rate: float = 0.05,
        reply_rate: float = 0.0,
        stop_rate: float = 0.0,
        application_key: str = DEFAULT_APPLICATION_KEY,
        application_secret: str = DEFAULT_APPLICATION_SECRET,
        consumer_key: str = DEFAULT_CONSUMER_KEY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self.service_name = service_name
        self.state = SandboxState(
            seed=seed,
            service_name=service_name,
            credits_left=credits,
            delivery_delay_s=delivery_delay_s,
            failure_rate=failure_rate,
            clock=clock,
        )
        self.faults = Faults(
            seed=seed,
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            rules=[r if isinstance(r, FaultRule) else FaultRule.from_dict(r) for r in faults],
            rate_limit_per_s=rate_limit_per_s,
            rate_limit_burst=rate_limit_burst,
            hold_s=hold_s,
        )
        self.auth = Authenticator(application_key, application_secret, max_skew_s=max_skew_s)
        self.auth.add_consumer_key(FULL_ACCESS, key=consumer_key)
        self._credentials = {
            "application_key": application_key,
            "application_secret": application_secret,
            "consumer_key": consumer_key,
        }
        self.callbacks = CallbackSender(self.state, reply_rate=reply_rate, stop_rate=stop_rate, clock=clock)
        self.state.listener = self.callbacks.sms_created
        self._stopping = threading.Event()
        control = ControlApi(self.state, self.faults, self.auth, self.callbacks)
        self._dispatcher = Dispatcher(self.state, self.faults, self.auth, self._stopping, control, clock)
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._control: SandboxControl | None = None

    def start(self) -> Sandbox:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = SandboxHTTPServer(
            (self.host, self.port), self._dispatcher.handle, lambda: self.faults.hold_s, self._stopping
        )
        self.port = self._server.server_address[1]
        self.callbacks.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        self.callbacks.stop()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join()

    def serve_forever(self) -> None:
        """Start, then block until :meth:`stop` is called (from a signal handler, say)."""
        self.start()
        assert self._thread is not None
        while self._thread.is_alive():
            self._thread.join(0.2)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/1.0"

    @property
    def credentials(self) -> dict[str, str]:
        return dict(self._credentials)

    @property
    def control(self) -> SandboxControl:
        if self._control is None:
            self._control = SandboxControl(self.base_url)
        return self._control

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
