"""``sms-worker inbound``: the HTTP service OVH calls back (aiohttp).

Routes, on one port:

=====================================  ==========  ==========================================
path                                   methods     what
=====================================  ==========  ==========================================
``/ovh/<token>/delivery``              GET, POST   delivery receipts (``callBack``)
``/ovh/<token>/reply``                 GET, POST   replies (``smsResponse`` cgi)
``/ovh/<token>/stop``                  GET, POST   STOPs (``stopCallBack``)
``/ovh/<token>/receivers/<secret>.csv`` GET         a bulk campaign's receivers document, for OVH
``/healthz``                           GET         the process answers
``/readyz``                            GET         Redis answers (else 503)
``/metrics``                           GET         Prometheus text
=====================================  ==========  ==========================================

Security: the token is compared in constant time and a wrong one is 404, like any unknown path
(before anything else is looked at); other methods are 405; a query string longer than
``inbound_max_query_bytes`` is 414, a body larger than ``inbound_max_body_bytes`` 413; parameters
that cannot be read are 400. Answers are fixed texts: nothing of the request is echoed back, and
no access log is written (the token is in the path). Redis unreachable is 503.

A receivers document is served while its secret's key lives (``keys.bulk_url``: it expires
with the campaign's documents); an unknown or expired secret is 404, like a wrong token.

A delivery report for an SMS id not recorded yet (OVH can call back before the worker has
settled the call that sent it) is kept for ``inbound_orphan_grace_s`` and tried again every
``ORPHAN_RETRY_S``; then it is counted as an unknown id and dropped. One that names its
receiver (the account's callbacks do) is first offered to ``bulk_mapper``, each time: the
rows of bulk campaigns, whose SMS ids OVH does not tell (``worker.campaigns.callbacks``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio
from aiohttp import web

from contracts.redis_connection import connect_async, watch_async
from worker.after_send import params
from worker.after_send.events import InvalidNumber, Receipt
from worker.after_send.http import QuietAppRunner
from worker.after_send.metrics import CONTENT_TYPE, InboundMetrics
from worker.after_send.ptts import PttTable, ask_for_wanted
from worker.after_send.publish import AsyncPublisher
from worker.settings import Settings
from worker.store import keys

log = logging.getLogger(__name__)

#: How often delivery reports of unknown SMS ids are tried again (seconds).
ORPHAN_RETRY_S = 0.5
#: Orphans tried per round.
ORPHAN_BATCH = 200
#: How often OVH's ptt descriptions are re-read from Redis (seconds).
PTT_RELOAD_S = 60.0
#: Methods the callback paths answer.
CALLBACK_METHODS = ("GET", "POST")
#: Seconds ``/readyz`` waits for Redis.
READY_TIMEOUT_S = 1.0
#: A receivers document's file name: its secret (32 hex digits) and ``.csv``.
DOCUMENT_NAME = re.compile(r"^([0-9a-f]{32})\.csv$")

#: Maps a delivery report of an SMS id the worker does not know to a bulk campaign's row; ``True``
#: when it did (the SMS is then recorded).
BulkMapper = Callable[[Receipt], Awaitable[bool]]


def _plain(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text, headers=headers)


class Inbound:
    """The service's state: settings, Redis, the publisher, the metrics."""

    def __init__(
        self,
        settings: Settings,
        client: redis.asyncio.Redis,
        metrics: InboundMetrics,
        *,
        bulk_mapper: BulkMapper | None = None,
    ) -> None:
        if settings.inbound_token is None:
            raise ValueError("the inbound service needs a token")
        self.settings = settings
        self.redis = client
        self.metrics = metrics
        self.ptts = PttTable()
        self.publisher = AsyncPublisher.from_settings(client, self.ptts, settings)
        self._token = settings.inbound_token.get_secret_value().encode()
        self.bulk_mapper = bulk_mapper

    # -- callbacks -------------------------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.Response:
        token, kind = request.match_info["token"], request.match_info["kind"]
        if not hmac.compare_digest(token.encode(), self._token) or kind not in params.READERS:
            self.metrics.callbacks.labels("unknown", "not_found").inc()
            return _plain(404, "404: Not Found")
        if request.method not in CALLBACK_METHODS:
            self.metrics.callbacks.labels(kind, "method_not_allowed").inc()
            return _plain(405, "405: Method Not Allowed", Allow=", ".join(CALLBACK_METHODS))
        query = request.rel_url.raw_query_string
        if len(query) > self.settings.inbound_max_query_bytes:
            self.metrics.callbacks.labels(kind, "too_large").inc()
            return _plain(414, "414: URI Too Long")
        try:
            body = await request.read() if request.method == "POST" else b""
        except web.HTTPRequestEntityTooLarge:
            self.metrics.callbacks.labels(kind, "too_large").inc()
            return _plain(413, "413: Request Entity Too Large")
        try:
            values = params.fields(query, body, request.content_type if body else "")
            parsed = params.READERS[kind](values)
            if isinstance(parsed, Receipt):
                outcome = await self._delivery(parsed)
            else:
                events, published = await self.publisher.reply(parsed)
                outcome = "published" if any(published) else "duplicate"
                self._count_events(incoming=published[0], optout=published[1])
        except (params.BadCallback, InvalidNumber) as exc:
            log.debug("%s callback refused: %s", kind, exc)
            self.metrics.callbacks.labels(kind, "rejected").inc()
            return _plain(400, "400: Bad Request")
        self.metrics.callbacks.labels(kind, outcome).inc()
        return _plain(200, "OK")

    async def document(self, request: web.Request) -> web.Response:
        """A bulk campaign's receivers document (OVH fetches it when the jobs call names it)."""
        token, name = request.match_info["token"], request.match_info["name"]
        found = DOCUMENT_NAME.match(name)
        if not hmac.compare_digest(token.encode(), self._token) or found is None:
            self.metrics.callbacks.labels("unknown", "not_found").inc()
            return _plain(404, "404: Not Found")
        if request.method != "GET":
            return _plain(405, "405: Method Not Allowed", Allow="GET")
        raw = await self.redis.get(keys.bulk_url(found.group(1)))
        member = raw.decode() if isinstance(raw, bytes) else ""
        text = None
        if member:
            campaign_id, _, number = member.rpartition("/")
            text = await self.redis.get(keys.bulk_document(campaign_id, int(number)))
        if text is None:
            self.metrics.callbacks.labels("receivers", "not_found").inc()
            return _plain(404, "404: Not Found")
        self.metrics.callbacks.labels("receivers", "served").inc()
        log.info("receivers document %s served (%d bytes)", member, len(text))
        return web.Response(body=text, headers={"Content-Type": "text/csv; charset=utf-8"})

    async def _delivery(self, receipt: Receipt) -> str:
        outcome = await self.publisher.receipt(receipt)
        if outcome == "unknown_id" and receipt.receiver and self.bulk_mapper is not None:
            if await self.bulk_mapper(receipt):
                outcome = await self.publisher.receipt(receipt)
        if outcome == "unknown_id":
            await self._park(receipt)
            return "parked"
        if outcome == "published":
            self.metrics.events.labels("delivery_report").inc()
        return outcome

    def _count_events(self, *, incoming: int, optout: int) -> None:
        if incoming:
            self.metrics.events.labels("incoming_sms").inc()
        if optout:
            self.metrics.events.labels("opt_out").inc()

    # -- delivery reports of SMS ids not recorded yet --------------------------------------------

    async def _park(self, receipt: Receipt) -> None:
        member = json.dumps(
            {
                "ovh_id": receipt.ovh_id,
                "ptt": receipt.ptt,
                "dlr": receipt.dlr,
                "dlr_description": receipt.dlr_description,
                "reported_at": receipt.reported_at,
                "receiver": receipt.receiver,
            },
            sort_keys=True,
        )
        expiry_ms = int((time.time() + self.settings.inbound_orphan_grace_s) * 1000)
        ttl_s = int(self.settings.inbound_orphan_grace_s) + 60
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.ORPHANS, {member: expiry_ms}, nx=True)
            pipe.zremrangebyrank(keys.ORPHANS, 0, -keys.ORPHANS_MAX - 1)
            pipe.expire(keys.ORPHANS, ttl_s)
            await pipe.execute()
        log.debug("delivery report for SMS %s, not recorded yet: kept for a retry", receipt.ovh_id)

    async def retry_orphans(self) -> None:
        """One round: publish the parked reports whose SMS is now recorded, drop the expired ones."""
        now_ms = time.time() * 1000
        parked: list[Any] = await self.redis.zrange(keys.ORPHANS, 0, ORPHAN_BATCH - 1, withscores=True)
        for raw, expiry_ms in parked:
            receipt = Receipt(source="callback", **json.loads(raw))
            outcome = await self.publisher.receipt(receipt)
            if outcome == "unknown_id" and receipt.receiver and self.bulk_mapper is not None:
                if await self.bulk_mapper(receipt):
                    outcome = await self.publisher.receipt(receipt)
            if outcome != "unknown_id":
                if await self.redis.zrem(keys.ORPHANS, raw) and outcome == "published":
                    self.metrics.events.labels("delivery_report").inc()
            elif expiry_ms <= now_ms and await self.redis.zrem(keys.ORPHANS, raw):
                self.metrics.unknown_ids.inc()
                log.info("delivery report for unknown SMS id %s dropped (ptt %s)", receipt.ovh_id, receipt.ptt)

    async def reload_ptts(self) -> None:
        """Re-read OVH's ptt descriptions, and ask the worker for the codes seen without one."""
        self.ptts.load(await self.redis.hgetall(keys.PTTS))
        wanted = self.ptts.take_wanted()
        if wanted:
            async with self.redis.pipeline(transaction=False) as pipe:
                ask_for_wanted(pipe, wanted)
                await pipe.execute()

    # -- health ----------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return _plain(200, "alive")

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(self.redis.ping(), READY_TIMEOUT_S)
        except (TimeoutError, redis.RedisError, OSError):
            return _plain(503, "Redis does not answer")
        return _plain(200, "ready")

    async def metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


@web.middleware
async def _redis_down(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    """Redis unreachable is 503 (OVH may call again), not an error page."""
    try:
        return await handler(request)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("Redis unavailable while serving %s: %s", request.match_info.route.name or "a request", exc)
        return _plain(503, "503: Service Unavailable")


def make_app(inbound: Inbound) -> web.Application:
    app = web.Application(client_max_size=inbound.settings.inbound_max_body_bytes, middlewares=[_redis_down])
    app.router.add_route("*", "/ovh/{token}/{kind}", inbound.callback, name="callback")
    app.router.add_route("*", "/ovh/{token}/receivers/{name}", inbound.document, name="receivers")
    app.router.add_get("/healthz", inbound.healthz, allow_head=False)
    app.router.add_get("/readyz", inbound.readyz, allow_head=False)
    app.router.add_get("/metrics", inbound.metrics_text, allow_head=False)
    return app


async def _every(seconds: float, job: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await job()
        except Exception as exc:  # Redis down and the like: the next round tries again
            log.warning("inbound background job %s failed: %s", getattr(job, "__name__", job), exc)
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass


async def serve(
    settings: Settings, *, stop: asyncio.Event | None = None, bulk_mapper: BulkMapper | None = None
) -> None:
    """Serve until SIGTERM or SIGINT (or ``stop``), then finish the requests in flight."""
    assert settings.redis_url, "the inbound service needs settings.redis_url"
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = connect_async(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=2.0)
    inbound = Inbound(settings, client, InboundMetrics(), bulk_mapper=bulk_mapper)
    runner = QuietAppRunner(make_app(inbound), access_log=None, logger=logging.getLogger("worker.after_send.http"))
    await runner.setup()
    site = web.TCPSite(runner, settings.inbound_host, settings.inbound_port, backlog=1024)
    await site.start()
    log.info("inbound service listening on %s:%d", settings.inbound_host, settings.inbound_port)
    orphan_every_s = max(min(ORPHAN_RETRY_S, settings.inbound_orphan_grace_s / 4), 0.05)
    jobs = [
        asyncio.create_task(_every(orphan_every_s, inbound.retry_orphans, stop)),
        asyncio.create_task(_every(PTT_RELOAD_S, inbound.reload_ptts, stop)),
        asyncio.create_task(watch_async(client, stop)),  # follows a Sentinel failover between callbacks
    ]
    await stop.wait()
    log.info("inbound service stopping")
    await runner.cleanup()
    await asyncio.gather(*jobs)
    await client.aclose()
