"""The Prometheus metrics of one app, in its own ``CollectorRegistry`` (tests run several apps).

Names follow Prometheus' conventions: ``sms_worker_`` prefix, the unit in the name (seconds,
credits), ``_total`` on counters (prometheus_client adds it). Labels are bounded sets: lanes,
statuses, outcomes, reason codes, queue names, configured users; never a phone number or a
request id. Counters count what this process did; add them up across replicas.

What lives in Redis (queue depth, staged receivers, quota left, the shared rate) is read when
``/metrics`` is scraped (``RedisGauges``), never polled: one scrape, a handful of Redis reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contracts.redis_connection import text
from contracts.wire import lane_queue, queue_key
from worker.accounting.quotas import QuotaStore
from worker.store import keys

log = logging.getLogger(__name__)

#: Buckets of receivers per jobs call: from one-time codes to full 500-receiver calls.
RECEIVER_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
#: Buckets of one jobs call try, in seconds: OVH answers in tens of ms; the read timeout is 30 s.
CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Buckets of a rate-limiter wait, in seconds: none, a slot at 1 call/s, a long campaign queue.
WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
#: Most batch buffers read per lane and scrape for the staged receivers gauge.
MAX_BUFFERS_PER_SCRAPE = 10_000


class Metrics:
    """Every metric the worker exposes, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests_accepted = Counter(
            "sms_worker_requests_accepted", "Requests staged for sending", ["lane"], registry=r
        )
        self.requests_rejected = Counter(
            "sms_worker_requests_rejected", "Requests answered rejected, by reason code", ["lane", "reason"], registry=r
        )
        self.results = Counter("sms_worker_results", "Results published, by status", ["status"], registry=r)
        self.jobs_calls = Counter(
            "sms_worker_jobs_calls",
            "POST .../jobs tries made, by outcome (sent, failed, retried, ambiguous)",
            ["lane", "outcome"],
            registry=r,
        )
        self.sms_sent = Counter("sms_worker_sms_sent", "Receivers OVH accepted (validReceivers)", ["lane"], registry=r)
        self.credits_used = Counter("sms_worker_credits_used", "Credits OVH removed (totalCreditsRemoved)", registry=r)
        self.receivers_per_call = Histogram(
            "sms_worker_receivers_per_call", "Receivers in one jobs call", buckets=RECEIVER_BUCKETS, registry=r
        )
        self.call_duration = Histogram(
            "sms_worker_call_duration_seconds", "Duration of one jobs call try", buckets=CALL_BUCKETS, registry=r
        )
        self.rate_limit_wait = Histogram(
            "sms_worker_rate_limit_wait_seconds",
            "Time an OVH call waited for a rate-limit slot",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.ambiguous_calls = Counter(
            "sms_worker_ambiguous_calls", "Jobs calls whose outcome is unknown (may have been sent)", registry=r
        )
        self.breaker_trips = Counter(
            "sms_worker_campaign_breaker_trips",
            "Bulk campaigns paused by the circuit breaker (failure share over its window)",
            registry=r,
        )
        self.reconciled_receivers = Counter(
            "sms_worker_reconciled_receivers",
            "Receivers of ambiguous calls reconciled against OVH, by outcome",
            ["outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "sms_worker_dead_letters", "Messages moved to a dead-letter queue", ["queue"], registry=r
        )

    def watch_redis(self, gauges: RedisGauges) -> None:
        """Expose the gauges read from Redis at scrape time."""
        self.registry.register(gauges)


class RedisGauges(Collector):
    """Gauges read from Redis when ``/metrics`` is scraped.

    ``client`` should have short socket timeouts: while Redis does not answer, these gauges are
    left out of the scrape (the rest is still served) and the failure is logged.
    ``current_rate`` reads the shared limiter's rate (calls per second).
    """

    def __init__(
        self,
        client: redis.Redis,
        lanes: Sequence[str],
        *,
        current_rate: Callable[[], float] | None = None,
        quotas: QuotaStore | None = None,
    ) -> None:
        self.client = client
        self.lanes = list(lanes)
        self.current_rate = current_rate
        self.quotas = quotas

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except (redis.RedisError, OSError) as exc:
            log.warning("metrics read from Redis left out of this scrape: %s", exc)

    def _collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("sms_worker_queue_depth", "Messages waiting in a lane's queue", labels=["lane"])
        staged = GaugeMetricFamily(
            "sms_worker_staged_receivers", "Receivers staged in batch buffers, not yet claimed", labels=["lane"]
        )
        with self.client.pipeline(transaction=False) as pipe:
            for lane in self.lanes:
                pipe.llen(queue_key(lane_queue(lane)))
                pipe.zrange(keys.due(lane), 0, MAX_BUFFERS_PER_SCRAPE - 1)
            replies = pipe.execute()
        buffers = {lane: replies[2 * n + 1] for n, lane in enumerate(self.lanes)}
        with self.client.pipeline(transaction=False) as pipe:
            for lane in self.lanes:
                for batch_key in buffers[lane]:
                    pipe.llen(keys.buffer(text(batch_key)))
            lengths = iter(pipe.execute())
        for n, lane in enumerate(self.lanes):
            depth.add_metric([lane], replies[2 * n])
            staged.add_metric([lane], sum(next(lengths) for _ in buffers[lane]))
        yield depth
        yield staged
        # counted by settle.lua for every replica (keys.STATS): a counter of the whole deployment
        dropped = CounterMetricFamily(
            "sms_worker_pull_receipts_dropped",
            "SMS pull mode stopped polling the receipt of, past SMS_WORKER_PULL_MAX_PENDING (all replicas)",
        )
        dropped.add_metric([], float(self.client.hget(keys.STATS, "dropped:receipts") or 0))
        yield dropped
        if self.current_rate is not None:
            rate = GaugeMetricFamily(
                "sms_worker_rate_limit_current_per_second",
                "Jobs calls per second the shared rate limiter allows now (lowered after 429s)",
            )
            rate.add_metric([], self.current_rate())
            yield rate
        if self.quotas is not None:
            # Labelled by service too: a login is unique within one SMS account only.
            left = GaugeMetricFamily(
                "sms_worker_quota_left_credits", "Credits left on a user's quota", labels=["service", "user"]
            )
            for state in self.quotas.all():
                if state.left is not None:
                    left.add_metric([state.service, state.login], state.left)
            yield left
