"""Running the publications ``worker.after_send.events`` builds: two Redis round trips each (read
the mapping, then one atomic check-and-publish script), with a synchronous client (the pull
pollers' threads) or an asyncio one (the inbound service).
"""

from __future__ import annotations

import logging
from typing import Any, Self

import redis
import redis.asyncio

from worker.after_send.events import (
    LAST_SENT,
    REPORT_OUTCOMES,
    TRACKED,
    Receipt,
    Reply,
    ReplyEvents,
    ReplyScript,
    ReportScript,
    reply_call,
    reply_number,
    report_call,
)
from worker.after_send.ptts import PttTable
from worker.phones import mask_number
from worker.settings import Settings
from worker.store import keys

log = logging.getLogger(__name__)


def _log_report(outcome: str, receipt: Receipt, report: Any) -> None:
    if outcome == "published":
        log.debug(
            "delivery report: SMS %s of request %s to %s is %s (ptt %s, %s)",
            receipt.ovh_id,
            report.request_id,
            mask_number(report.receiver),
            report.status,
            report.ptt,
            receipt.source,
        )
    elif outcome == "stale" and report.final:  # a pending after the final one is just late
        log.info(
            "delivery report: SMS %s already has another final status; %s (ptt %s) not published",
            receipt.ovh_id,
            report.status,
            report.ptt,
        )


def _log_reply(events: ReplyEvents, published: tuple[int, int]) -> None:
    if published[0] and events.incoming is not None:
        log.info(
            "incoming SMS %s from %s (request %s, %s)",
            events.incoming.incoming_id,
            mask_number(events.incoming.sender),
            events.incoming.request_id,
            events.incoming.source,
        )
    if published[1] and events.optout is not None:
        log.info(
            "opt-out of %s on %s (request %s, via %s)",
            mask_number(events.optout.number),
            events.optout.service_name,
            events.optout.request_id,
            events.optout.via,
        )
        if events.optout.service_name is None:
            log.warning("opt-out with no SMS account known: set SMS_WORKER_SERVICE_NAME or use callbacks setup")


class _Publishing:
    """What both publishers hold: the event-building side is shared (``report_call``,
    ``reply_call``), only the Redis round trips differ (threads or asyncio)."""

    def __init__(
        self,
        client: Any,
        ptts: PttTable,
        *,
        default_region: str,
        default_service: str | None,
        results_queue: str,
        dedupe_ttl_s: int,
        queue_cap: int,
        campaign_ttl_s: int = 0,
    ) -> None:
        self.redis = client
        self.ptts = ptts
        self.default_region = default_region
        self.results_queue = results_queue
        self.queue_cap = queue_cap
        self.campaign_ttl_s = campaign_ttl_s
        self.reply_options: dict[str, Any] = {
            "default_service": default_service,
            "results_queue": results_queue,
            "dedupe_ttl_s": dedupe_ttl_s,
            "queue_cap": queue_cap,
            "campaign_ttl_s": campaign_ttl_s,
        }
        self._report = ReportScript(client)
        self._reply = ReplyScript(client)

    @classmethod
    def from_settings(cls, client: Any, ptts: PttTable, settings: Settings) -> Self:
        """A publisher configured as ``settings`` say (the inbound service's and pull mode's)."""
        return cls(
            client,
            ptts,
            default_region=settings.default_region,
            default_service=settings.service_name,
            results_queue=settings.results_queue,
            dedupe_ttl_s=settings.dedupe_ttl_s,
            queue_cap=settings.results_queue_max_length,
            campaign_ttl_s=settings.campaign_stats_ttl_s,
        )


class Publisher(_Publishing):
    """Synchronous: for threads (pull mode)."""

    redis: redis.Redis

    def receipt(self, receipt: Receipt, *, count_poll: bool = False) -> tuple[str, int]:
        """``(outcome, polls)``: outcome is one of ``REPORT_OUTCOMES``' values."""
        tracked = self.redis.hmget(keys.sms(receipt.ovh_id), TRACKED)
        built = report_call(
            receipt,
            tracked,
            self.ptts,
            count_poll=count_poll,
            results_queue=self.results_queue,
            queue_cap=self.queue_cap,
            campaign_ttl_s=self.campaign_ttl_s,
        )
        if built is None:
            return "unknown_id", 0
        report, call = built
        published = self._report(call.keys, call.document, call.refs)
        outcome = REPORT_OUTCOMES[published.code]
        _log_report(outcome, receipt, report)
        return outcome, published.polls

    def reply(self, reply: Reply) -> ReplyEvents:
        """Publish a reply's events (``InvalidNumber`` when its number is not one)."""
        number = reply_number(reply.number, self.default_region)
        last = self.redis.hmget(keys.last_sent(number), LAST_SENT)
        events = reply_call(reply, number, last, **self.reply_options)
        published = self._reply(events.call.keys, events.call.document, events.call.refs)
        _log_reply(events, published)
        return events


class AsyncPublisher(_Publishing):
    """asyncio: for the inbound service."""

    redis: redis.asyncio.Redis

    async def receipt(self, receipt: Receipt) -> str:
        """The outcome: one of ``REPORT_OUTCOMES``' values."""
        tracked = await self.redis.hmget(keys.sms(receipt.ovh_id), TRACKED)
        built = report_call(
            receipt,
            tracked,
            self.ptts,
            results_queue=self.results_queue,
            queue_cap=self.queue_cap,
            campaign_ttl_s=self.campaign_ttl_s,
        )
        if built is None:
            return "unknown_id"
        report, call = built
        published = await self._report.call_async(call.keys, call.document, call.refs)
        outcome = REPORT_OUTCOMES[published.code]
        _log_report(outcome, receipt, report)
        return outcome

    async def reply(self, reply: Reply) -> tuple[ReplyEvents, tuple[int, int]]:
        """Publish a reply's events; also what was published (incoming, opt-out) as 1/0."""
        number = reply_number(reply.number, self.default_region)
        last = await self.redis.hmget(keys.last_sent(number), LAST_SENT)
        events = reply_call(reply, number, last, **self.reply_options)
        published = await self._reply.call_async(events.call.keys, events.call.document, events.call.refs)
        _log_reply(events, published)
        return events, published
