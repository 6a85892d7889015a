"""Reading the results queue: parse events, or consume them with a dramatiq actor.

The worker publishes one ``SendResult`` per request, one ``CreditUsage`` per OVH call, one
``QuotaAlert`` per crossing of a user's alert threshold, and after the send one ``DeliveryReport``
per (SMS, status), one ``IncomingSms`` per reply and one ``OptOut`` per STOP, as dramatiq messages
(actor ``sms_result``, one JSON object argument) on the request's ``reply_to`` queue (replies and
opt-outs that cannot be tied to a request go to the worker's results queue).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
from pydantic import TypeAdapter

from .models import CreditUsage, DeliveryReport, IncomingSms, OptOut, QuotaAlert, ResultEvent, SendResult
from .wire import DEFAULT_RESULTS_QUEUE, RESULT_ACTOR_NAME

Event = SendResult | CreditUsage | QuotaAlert | DeliveryReport | IncomingSms | OptOut

_EVENT = TypeAdapter(ResultEvent)


def parse_event(payload: dict[str, Any] | str | bytes) -> Event:
    """Validate one results-queue payload into its model (by its ``kind``)."""
    if isinstance(payload, str | bytes):
        return _EVENT.validate_json(payload)
    return _EVENT.validate_python(payload)


def results_actor(
    handler: Callable[[Event], None],
    *,
    queue_name: str = DEFAULT_RESULTS_QUEUE,
    broker: dramatiq.Broker | None = None,
    **actor_options: Any,
) -> dramatiq.Actor[[dict[str, Any]], None]:
    """Register ``handler`` as the consumer of a results queue in a dramatiq service.

    Example::

        def on_event(event):
            if isinstance(event, SendResult):
                ...
            elif isinstance(event, DeliveryReport) and event.final:
                ...

        results_actor(on_event)          # then run: dramatiq your_module

    ``actor_options`` go to ``dramatiq.actor`` (``max_retries``, ...).
    """

    def consume(payload: dict[str, Any]) -> None:
        handler(parse_event(payload))

    consume.__name__ = consume.__qualname__ = RESULT_ACTOR_NAME
    decorate = dramatiq.actor(actor_name=RESULT_ACTOR_NAME, queue_name=queue_name, broker=broker, **actor_options)
    return decorate(consume)
