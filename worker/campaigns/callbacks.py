"""Delivery callbacks that map SMS of bulk campaigns to their rows (for ``sms-worker inbound``).

OVH answers a bulk jobs call without SMS ids, but the account's delivery callbacks name the SMS
id and its ``receiver``. For a callback of an id the worker does not know, ``BulkMapper`` looks
for the receiver in the bulk campaigns being tracked (``keys.BULK_TRACKED``: a document sent,
rows without a result; few at a time) and, when one of them holds it and its row has no result
yet, publishes the row's ``sent`` result and records the SMS (``RowResults``), so that this
callback and every later one are published as delivery reports. No OVH call.

A receiver in two tracked campaigns at once goes to the older one whose row has no result yet:
the other's row is found by its own tag listing (``worker.campaigns.outcomes``). The row's
credits are its estimate (parts of its merged text x the destination's rate: OVH's billing
rule), since a callback carries none.
"""

from __future__ import annotations

import asyncio

from contracts.redis_connection import connect, text
from contracts.wire import result_key
from worker.after_send.events import Receipt
from worker.campaigns.outcomes import CampaignRecord, RowOutcome, RowResults, row_of
from worker.campaigns.rows import request_id
from worker.settings import Settings
from worker.store import keys


class BulkMapper:
    """``await mapper(receipt)``: ``True`` when the receipt's SMS was mapped to a bulk row."""

    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url
        self.redis = connect(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=2.0)
        self.results = RowResults(
            self.redis,
            result_ttl_s=settings.result_ttl_s,
            queue_cap=settings.results_queue_max_length,
            tracking_ttl_s=settings.delivery_tracking_ttl_s,
            stats_ttl_s=settings.campaign_stats_ttl_s,
        )

    async def __call__(self, receipt: Receipt) -> bool:
        return await asyncio.to_thread(self.map, receipt)

    def map(self, receipt: Receipt) -> bool:
        if not receipt.receiver:
            return False
        for raw in self.redis.zrange(keys.BULK_TRACKED, 0, -1):
            campaign_id = text(raw)
            row = row_of(self.redis, campaign_id, receipt.receiver)
            if row is None:
                continue
            line, receiver, estimate = row
            if self.redis.exists(result_key(request_id(campaign_id, line))):
                continue
            record = CampaignRecord.read(self.redis, campaign_id)
            if record is None:
                continue
            outcome = RowOutcome(line, receiver, "sent", estimate, ovh_id=receipt.ovh_id, credits=estimate)
            self.results.publish(record, [outcome])
            return True
        return False

    def close(self) -> None:
        self.redis.close()
