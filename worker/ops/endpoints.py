"""``/metrics``, ``/healthz`` and ``/readyz`` on one port (``SMS_WORKER_METRICS_PORT``).

The server is the standard library's ``wsgiref`` in a daemon thread, one thread per request,
routing to prometheus_client's own WSGI app for ``/metrics``: three read-only GETs from a
probe and a scraper need nothing more, and it adds no dependency or event loop to the worker.

- ``/healthz``: 200 while every registered loop ticked within its interval, else 503 naming
  the stale one (``worker.ops.health``).
- ``/readyz``: 200 while Redis answers and the last OVH check passed, else 503 with the reason
  (``worker.ops.readiness``).

Answers are one line of plain text. ``ops_server`` builds the server of an app from its parts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from contracts.wire import LANES
from worker.accounting.quotas import QuotaStore
from worker.ops.health import Liveness
from worker.ops.metrics import RedisGauges
from worker.ops.readiness import Readiness, check_ovh, redis_client
from worker.ops.telemetry import Telemetry
from worker.ovhcloud.rate_limit import RateLimiter
from worker.settings import Settings

StartResponse = Callable[..., Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a hung scrape never holds the process at exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the logs with access lines."""


class OpsServer:
    """Serves the three endpoints on ``host:port`` (port 0: any free one, see ``port``).

    ``readiness`` runs (its background OVH check) while the server runs.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        registry: CollectorRegistry,
        liveness: Liveness,
        readiness: Readiness,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.liveness = liveness
        self.readiness = readiness
        self._metrics = make_wsgi_app(registry)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the ops server is not started")
        return int(self._server.server_port)

    def start(self) -> OpsServer:
        server = make_server(
            self.host, self.requested_port, self._app, server_class=_Server, handler_class=_QuietHandler
        )
        assert isinstance(server, _Server)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="sms-ops-http", daemon=True)
        self._thread.start()
        self.readiness.start()
        return self

    def stop(self) -> None:
        self.readiness.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            stale = self.liveness.stale()
            return _text(start_response, 503 if stale else 200, "; ".join(map(str, stale)) or "alive")
        if path == "/readyz":
            reason = self.readiness.reason()
            return _text(start_response, 503 if reason else 200, reason or "ready")
        return _text(start_response, 404, "not found: /metrics, /healthz, /readyz")


_STATUS = {200: "200 OK", 404: "404 Not Found", 503: "503 Service Unavailable"}


def _text(start_response: StartResponse, status: int, line: str) -> list[bytes]:
    body = (line + "\n").encode()
    start_response(_STATUS[status], [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def ops_server(
    settings: Settings,
    telemetry: Telemetry,
    *,
    limiter: RateLimiter,
    client_factory: Callable[[], Any],
) -> OpsServer | None:
    """The ops server of an app, or ``None`` when ``settings.metrics_port`` is not set.

    Scrapes and probes read Redis through their own client with short timeouts, so a Redis
    that does not answer makes ``/readyz`` fail fast instead of hanging the probe. Queue
    gauges cover every lane, not only this pool's: the queues are shared, and a dashboard or
    an autoscaler of one pool may watch another's.
    """
    if settings.metrics_port is None or settings.redis_url is None:
        return None
    client = redis_client(settings.redis_url)
    telemetry.metrics.watch_redis(
        RedisGauges(client, LANES, current_rate=limiter.current_rate, quotas=QuotaStore(client))
    )
    ovh_clients: list[Any] = []  # built in the readiness thread, on first use

    def ovh_check() -> None:
        if not ovh_clients:
            ovh_clients.append(client_factory())
        check_ovh(ovh_clients[0], endpoint=settings.ovh_endpoint, service=settings.service_name, sender=settings.sender)

    return OpsServer(
        host=settings.metrics_host,
        port=settings.metrics_port,
        registry=telemetry.metrics.registry,
        liveness=telemetry.liveness,
        readiness=Readiness(client, ovh_check, limiter=limiter),
    )
