"""Wiring: the dramatiq broker and accept actors, and the worker's own threads.

A worker process runs: dramatiq's consumer and accept threads (one accept actor per lane), the
dispatchers, the reconcilers, the lease keeper (lease refresh, takeover sweep, dramatiq
maintenance) and the refresher (rates and balances). ``build_app`` is used by ``sms-worker
run`` and, in-process, by the demo and the tests through ``App.start``/``App.stop``.

Stopping drains (``App.stop``): dispatchers stop claiming at once, accept stops consuming
(prefetched messages go back to their queue), calls in flight finish and settle, claims not yet
called are given back; whatever is still running when ``drain_s`` is over is left to the lease:
once it expires, other workers take it over.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import CurrentMessage

from contracts.redis_connection import connect
from contracts.wire import LANES, accept_actor_name, delay_queue, lane_queue
from worker import background_jobs
from worker.accounting.credits import AccountBalance, RateTable
from worker.accounting.quotas import QuotaStore, load_config
from worker.accounting.refresher import Refresher
from worker.attempts.bulk import BulkAttempts
from worker.attempts.dispatcher import Dispatcher
from worker.attempts.lease import Lease, LeaseKeeper
from worker.attempts.lifecycle import Attempts
from worker.attempts.reconcile import Reconciler
from worker.batching.buffers import Buffers
from worker.campaigns.bulk_dispatch import BulkDispatcher
from worker.campaigns.outcomes import RowResults
from worker.errors import UnreadablePayload
from worker.intake.accept import AcceptStage, Delivery
from worker.ops.endpoints import OpsServer, ops_server
from worker.ops.telemetry import Telemetry
from worker.ovhcloud.background_calls import BackgroundCalls
from worker.ovhcloud.client import make_client
from worker.ovhcloud.gateway import OvhGateway
from worker.ovhcloud.rate_limit import RateLimiter
from worker.runners import Background
from worker.settings import Settings
from worker.store import keys
from worker.store.queues import Broker

log = logging.getLogger(__name__)

#: Tries of an accept message that failed for a reason other than its content.
ACCEPT_MAX_RETRIES = 20
#: The reason recorded on attempts taken over from a worker whose lease expired.
TAKEOVER_REASON = "the worker making the call lost its lease (stopped, paused or cut off) during the call"


def _retry_when(retries: int, exc: BaseException) -> bool:
    """Unreadable payloads go straight to the dead-letter queue; a message whose requests wait for
    a destination's rate comes back (accept bounds that wait by time); other failures retry."""
    if isinstance(exc, UnreadablePayload):
        log.error("dead-lettering a message: %s", exc)
        return False
    if isinstance(exc, dramatiq.Retry):
        return True
    return retries < ACCEPT_MAX_RETRIES


@dataclass
class App:
    settings: Settings
    broker: Broker
    buffers: Buffers
    attempts: Attempts
    lease: Lease
    accept: AcceptStage
    dispatchers: list[Dispatcher]
    reconcilers: list[Reconciler]
    refresher: Refresher
    telemetry: Telemetry = field(default_factory=Telemetry)
    ops: OpsServer | None = None  # /metrics, /healthz, /readyz when settings.metrics_port is set
    background: Background | None = None  # senders, blacklist, ptts, pull pollers (background_jobs)
    bulk: BulkDispatcher | None = None  # bulk campaigns' documents (worker.campaigns.bulk_dispatch)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _keeper: threading.Thread | None = None
    _keeper_stop: threading.Event = field(default_factory=threading.Event)
    _worker: dramatiq.Worker | None = None

    @property
    def queues(self) -> list[str]:
        return [lane_queue(lane) for lane in self.settings.lanes]

    def sweep(self) -> None:
        """The lease keeper's round: take over dead workers' attempts, requeue their messages."""
        for call_id, what in self.attempts.sweep(TAKEOVER_REASON):
            log.warning("took over call %s of a worker whose lease expired: %s", call_id, what)
        self.broker.maintain([*self.queues, *(delay_queue(q) for q in self.queues)])

    def start(self) -> App:
        """Take a lease, then run the worker's threads and dramatiq's in this process."""
        self._stop.clear()
        self._keeper_stop.clear()
        if self.ops is not None:
            self.ops.start()
        if not self.lease.refresh():
            log.warning("no lease yet (Redis does not answer): dispatching waits for one")
        self.telemetry.liveness.register("sms-lease", max(self.settings.lease_s, 5.0))
        keeper = LeaseKeeper(self.lease, self.sweep, alive=lambda: self.telemetry.tick("sms-lease"))
        self._keeper = self._thread(keeper.run, "sms-lease", self._keeper_stop)
        try:
            countries = [self.settings.default_region, *self.settings.rates_prefetch]
            self.refresher.prime(countries, self.settings.service_name)
        except Exception as exc:  # OVH or the limiter unavailable: the refresher retries in the background
            log.warning("rates and balance not read at start: %s", exc)
        for n, dispatcher in enumerate(self.dispatchers):
            self._threads.append(self._thread(dispatcher.run, f"sms-dispatch-{n}", self._stop))
        for n, reconciler in enumerate(self.reconcilers):
            self._threads.append(self._thread(reconciler.run, f"sms-reconcile-{n}", self._stop))
        self._threads.append(self._thread(self.refresher.run, "sms-refresh", self._stop))
        if self.bulk is not None:
            self._threads.append(self._thread(self.bulk.run, "sms-bulk", self._stop))
        if self.background is not None:
            self.background.start()
        self._worker = dramatiq.Worker(
            self.broker,
            queues=set(self.queues),
            worker_threads=self.settings.threads,
            worker_timeout=self.settings.poll_ms,
        )
        self._worker.start()
        return self

    @staticmethod
    def _thread(target: Callable[[threading.Event], None], name: str, stop: threading.Event) -> threading.Thread:
        # Daemon threads, joined with a deadline by ``stop``: a call stuck past the drain time
        # never keeps the process alive (the lease hands its attempt to another worker).
        thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
        thread.start()
        return thread

    def request_stop(self) -> None:
        """Stop waiting (for slots, backoffs, work) at once; ``stop`` then drains. Signal-safe."""
        self._stop.set()

    def stop(self, drain_s: float | None = None) -> bool:
        """Drain within ``drain_s`` (default ``settings.drain_s``); ``True`` if everything finished."""
        deadline = time.monotonic() + (self.settings.drain_s if drain_s is None else drain_s)
        self._stop.set()  # dispatchers stop claiming; waits for slots and backoffs end at once
        try:  # and their blocking waits on Redis too
            self.buffers.wake(self.settings.lanes, len(self.dispatchers))
            if self.reconcilers:
                self.buffers.redis.lpush(keys.RECONCILE_WAKE, *([1] * len(self.reconcilers)))
        except redis.RedisError:
            pass  # they end within their wait anyway
        if self.background is not None:
            self.background.stop()
        if self._worker is not None:
            # Stops consuming, puts prefetched messages back on their queues, waits for accept.
            self._worker.stop(timeout=int(max(deadline - time.monotonic(), 0.1) * 1000))
            self._worker = None
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        finished = not any(thread.is_alive() for thread in self._threads)
        self._threads.clear()
        self._keeper_stop.set()
        if self._keeper is not None:
            self._keeper.join(5.0)
        self.telemetry.liveness.unregister("sms-lease")
        if finished:
            self.lease.release()
        else:
            log.warning("drain time over with calls in flight: the lease hands them to other workers")
        if self.ops is not None:
            self.ops.stop()
        return finished

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


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def build_app(
    settings: Settings,
    *,
    ovh_credentials: dict[str, Any] | None = None,
    client: redis.Redis | None = None,
    clock: Callable[[], float] = time.time,
    usage_clock: Callable[[], float] | None = None,
) -> App:
    """Broker, actors and threads for ``settings``; OVH credentials default to python-ovh's own lookup.

    ``client``: the Redis client every part of the process shares (default: one for
    ``settings.redis_url``); tests pass one whose connections lose replies on purpose.
    ``clock``: the wall clock (unix s) the quiet hours are read with (a seam for tests).
    ``usage_clock`` (unix seconds) decides which day a settled call is counted on in
    ``sms-worker usage`` instead of Redis' clock: a seam for tests that spread sends over a month.
    """
    if not settings.redis_url:
        raise ValueError("build_app needs settings.redis_url")
    client = client if client is not None else connect(settings.redis_url)
    broker = Broker(client=client, heartbeat_timeout_ms=int(max(10.0, 2 * settings.lease_s) * 1000))
    buffers = Buffers.from_settings(client, settings, clock=clock)
    attempts = Attempts.from_settings(client, settings, usage_clock=usage_clock)
    credentials = {**settings.ovh_credentials(), **(ovh_credentials or {})}
    telemetry = Telemetry()

    def client_factory() -> Any:
        return make_client(
            settings.ovh_endpoint,
            timeout=(settings.ovh_connect_timeout_s, settings.ovh_read_timeout_s),
            **credentials,
        )

    gateway = OvhGateway(client_factory)
    stop = threading.Event()  # set by App.stop: ends every wait, background calls' slot waits included
    limiter = RateLimiter(
        client,
        key=consumer_key_id(settings.ovh_endpoint, client_factory()),
        rate_per_s=settings.rate_limit,
        burst=settings.rate_limit_burst,
        headroom=settings.rate_limit_headroom,
        on_grant=telemetry.rate_limit_granted,
    )
    lease = Lease(client, worker=worker_name(), lease_s=settings.lease_s)
    quota_store = QuotaStore(client)
    quota_store.apply_config(load_config(settings))
    rates = RateTable(client, ttl_s=settings.rates_ttl_s)
    balance = AccountBalance(refresh_s=settings.account_credits_refresh_s)
    calls = BackgroundCalls(gateway, limiter, stop=stop)
    policy, background = background_jobs.build(settings, client, calls)
    accept = AcceptStage(
        settings,
        buffers,
        rates=rates,
        balance=balance,
        quotas=quota_store,
        dead_letter=broker.dead_letter,
        telemetry=telemetry,
        policy=policy,
        quiet=settings.quiet_hours(),
        clock=clock,
    )
    # The first dispatcher serves only the highest lane this process has, so a one-time code
    # never waits behind bulk batches the other dispatchers are holding for a rate-limit slot.
    lanes_of = [settings.lanes[:1]] if settings.dispatchers > 1 and len(settings.lanes) > 1 else [settings.lanes]
    lanes_of += [settings.lanes] * (settings.dispatchers - len(lanes_of))
    dispatchers = [
        Dispatcher(settings, buffers, attempts, gateway, limiter, lease, lanes=lanes, telemetry=telemetry)
        for lanes in lanes_of
    ]
    reconcilers = [
        Reconciler(
            attempts,
            calls,
            default_queue=settings.results_queue,
            max_lookups=settings.reconcile_max_lookups,
            telemetry=telemetry,
        )
        for _ in range(settings.reconcilers)
    ]
    app = App(
        settings=settings,
        broker=broker,
        buffers=buffers,
        attempts=attempts,
        lease=lease,
        accept=accept,
        dispatchers=dispatchers,
        reconcilers=reconcilers,
        refresher=Refresher(rates, balance, calls),
        telemetry=telemetry,
        ops=ops_server(settings, telemetry, limiter=limiter, client_factory=client_factory),
        background=background,
        bulk=BulkDispatcher(
            settings,
            client,
            BulkAttempts(
                client,
                attempt_ttl_s=settings.bulk_document_ttl_s,
                grace_ms=int(settings.reconcile_grace_s * 1000),
                deadline_ms=int(settings.reconcile_deadline_s * 1000),
            ),
            gateway,
            limiter,
            lease,
            calls,
            RowResults(
                client,
                result_ttl_s=settings.result_ttl_s,
                queue_cap=settings.results_queue_max_length,
                tracking_ttl_s=settings.delivery_tracking_ttl_s,
                stats_ttl_s=settings.campaign_stats_ttl_s,
            ),
            on_breaker=lambda campaign_id: telemetry.breaker_tripped(),
            clock=clock,
        ),
        _stop=stop,
    )
    broker.add_middleware(telemetry.dramatiq_middleware())
    broker.add_middleware(CurrentMessage())

    def accept_actor(lane: str) -> Callable[..., None]:
        def accept_request(*args: Any, **kwargs: Any) -> None:
            if len(args) != 1 or kwargs:
                raise UnreadablePayload(f"an accept message takes one argument, not {len(args)} and {sorted(kwargs)}")
            message = CurrentMessage.get_current_message()
            delivery = None if message is None else Delivery(message.message_id, message.message_timestamp / 1000)
            accept(args[0], lane=lane, delivery=delivery)

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
            min_backoff=1_000,
            max_backoff=60_000,
        )(accept_actor(lane))
    return app
