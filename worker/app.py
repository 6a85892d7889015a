"""Wiring: the dramatiq broker, one accept actor per lane, and the dispatcher threads.

``build_app`` is used three ways: by ``worker.entrypoint`` (the module ``sms-worker run``
loads in each process), and in-process by the demo and the tests through ``App.start``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from contracts.wire import LANES, accept_actor_name, lane_queue

from . import upkeep
from .accounting.credits import AccountBalance, RateTable
from .accounting.quotas import QuotaStore, load_config
from .errors import UnreadablePayload
from .ovhcloud.background import Background
from .ovhcloud.client import make_client
from .ovhcloud.gateway import OvhGateway
from .ovhcloud.rate_limit import RateLimiter
from .pipeline.accept import AcceptStage
from .pipeline.buffers import BatchBuffer
from .pipeline.dispatch import Dispatcher
from .settings import Settings

log = logging.getLogger(__name__)

#: Tries of an accept message that failed for a reason other than its content (Redis down, ...).
ACCEPT_MAX_RETRIES = 5


def _retry_when(retries: int, exc: BaseException) -> bool:
    """Unreadable payloads go straight to the dead-letter queue; other failures retry a few times."""
    if isinstance(exc, UnreadablePayload):
        log.error("dead-lettering a message: %s", exc)
        return False
    return retries < ACCEPT_MAX_RETRIES


class DispatcherThreads(Middleware):
    """Runs the dispatcher threads for as long as the dramatiq worker runs."""

    def __init__(self, app: App) -> None:
        self.app = app

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.app.start_dispatchers()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.app.stop_dispatchers()


@dataclass
class App:
    settings: Settings
    broker: RedisBroker
    buffer: BatchBuffer
    accept: AcceptStage
    dispatchers: list[Dispatcher]
    background: Background | None = None  # after-the-send hook: worker/upkeep.py's jobs
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _worker: dramatiq.Worker | None = None

    def start_dispatchers(self) -> None:
        self._stop.clear()
        for n, dispatcher in enumerate(self.dispatchers):
            thread = threading.Thread(target=dispatcher.run, args=(self._stop,), name=f"sms-dispatch-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.background is not None:  # after-the-send hook
            self.background.start()

    def stop_dispatchers(self, timeout_s: float = 60.0) -> None:
        """Let in-flight calls finish and settle, then stop."""
        if self.background is not None:  # after-the-send hook
            self.background.stop()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()

    def start(self) -> App:
        """Run accept actors and dispatchers in this process (demo, tests)."""
        queues = {lane_queue(lane) for lane in self.settings.lanes}
        self._worker = dramatiq.Worker(
            self.broker, queues=queues, worker_threads=self.settings.threads, worker_timeout=self.settings.poll_ms
        )
        self._worker.start()  # boots the DispatcherThreads middleware too
        return self

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop(timeout=60_000)
            self._worker = None
        self.stop_dispatchers()

    def __enter__(self) -> App:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def calls(self) -> int:
        return sum(d.calls for d in self.dispatchers)


def consumer_key_id(endpoint: str, client: Any) -> str:
    """Names the OVH consumer key whose fair-use budget the rate limiter shares (no secret in it).

    python-ovh keeps the keys it resolved (arguments, environment or ovh.conf) on the client.
    """
    material = [endpoint, getattr(client, "_application_key", None), getattr(client, "_consumer_key", None)]
    material.append(getattr(client, "_client_id", None))
    return hashlib.sha256("|".join(str(part) for part in material).encode()).hexdigest()[:16]


def build_app(settings: Settings, *, ovh_credentials: dict[str, Any] | None = None) -> App:
    """Broker, actors and dispatchers for ``settings``; OVH credentials default to python-ovh's own lookup."""
    if not settings.redis_url:
        raise ValueError("build_app needs settings.redis_url")
    client = redis.Redis.from_url(settings.redis_url)
    broker = RedisBroker(client=client)
    buffer = BatchBuffer(
        client,
        max_receivers_per_call=settings.max_receivers_per_call,
        dedupe_ttl_s=settings.dedupe_ttl_s,
        result_ttl_s=settings.result_ttl_s,
    )
    credentials = ovh_credentials or {}

    def client_factory() -> Any:
        return make_client(
            settings.ovh_endpoint,
            timeout=(settings.ovh_connect_timeout_s, settings.ovh_read_timeout_s),
            **credentials,
        )

    quota_store = QuotaStore(client)
    quota_store.apply_config(load_config(settings))
    accept = AcceptStage(
        settings,
        buffer,
        rates=RateTable(client_factory, ttl_s=settings.rates_ttl_s, fallback=settings.fallback_credit_rate),
        balance=AccountBalance(client_factory, refresh_s=settings.account_credits_refresh_s),
        quotas=quota_store,
    )
    gateway = OvhGateway(client_factory)
    limiter = RateLimiter(
        client,
        key=consumer_key_id(settings.ovh_endpoint, gateway.client),
        rate_per_s=settings.rate_limit,
        burst=settings.rate_limit_burst,
    )
    # after-the-send hook (worker/upkeep.py): the accept stage's policy checks, background OVH upkeep
    accept.policy, background = upkeep.build(settings, client, client_factory, limiter)
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    # The first dispatcher serves only the highest lane this process has, so a one-time code
    # never waits behind bulk batches the other dispatchers are holding for a rate-limit slot.
    lanes_of = [settings.lanes[:1]] if settings.dispatchers > 1 and len(settings.lanes) > 1 else [settings.lanes]
    lanes_of += [settings.lanes] * (settings.dispatchers - len(lanes_of))
    dispatchers = [
        Dispatcher(settings, buffer, gateway, limiter, worker_id=worker_id, lanes=lanes) for lanes in lanes_of
    ]
    app = App(settings=settings, broker=broker, buffer=buffer, accept=accept, dispatchers=dispatchers)
    app.background = background  # after-the-send hook
    broker.add_middleware(DispatcherThreads(app))

    def accept_actor(lane: str) -> Any:
        def accept_request(payload: Any) -> None:
            accept(payload, lane=lane)

        return accept_request

    for rank, lane in enumerate(LANES):
        dramatiq.actor(
            broker=broker,
            actor_name=accept_actor_name(lane),
            queue_name=lane_queue(lane),
            # dramatiq's work queue hands prefetched messages to threads lowest priority first:
            # a code fetched from sms.high does not wait behind campaign packs already fetched.
            priority=rank * 10,
            retry_when=_retry_when,
            min_backoff=200,
            max_backoff=5_000,
        )(accept_actor(lane))
    return app
