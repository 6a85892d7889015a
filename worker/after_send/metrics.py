"""The inbound service's Prometheus metrics, in a registry of its own (``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Content type of ``render``'s text.
CONTENT_TYPE = CONTENT_TYPE_LATEST


class InboundMetrics:
    """Callbacks by kind and outcome, unknown SMS ids, events published."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.callbacks = Counter(
            "sms_inbound_callbacks",
            "Callbacks received, by kind (delivery, reply, stop, unknown) and outcome (published, duplicate, "
            "stale, parked, rejected, not_found, method_not_allowed, too_large, unavailable)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.unknown_ids = Counter(
            "sms_inbound_unknown_ids",
            "Delivery reports dropped because the worker never recorded their SMS id",
            registry=self.registry,
        )
        self.events = Counter(
            "sms_inbound_events_published",
            "Events published on results queues, by event (delivery_report, incoming_sms, opt_out)",
            ["event"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
