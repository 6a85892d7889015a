"""The wire contract of ovh-sms-worker: models, JSON Schema files, producer and result helpers.

This package never imports ``ovh``: services that only publish requests and read results
depend on it alone.
"""

from .models import (
    CreditUsage,
    DeliveryReport,
    ErrorInfo,
    IncomingSms,
    OptOut,
    Priority,
    QuotaAlert,
    ReceiverOutcome,
    SendRequest,
    SendResult,
)
from .producer import NotReplicated, ResultTimeout, SmsProducer
from .results import parse_event, results_actor
from .wire import CONTRACT_VERSION, DEFAULT_RESULTS_QUEUE, LANES

__all__ = [
    "CONTRACT_VERSION",
    "DEFAULT_RESULTS_QUEUE",
    "LANES",
    "CreditUsage",
    "DeliveryReport",
    "ErrorInfo",
    "IncomingSms",
    "NotReplicated",
    "OptOut",
    "Priority",
    "QuotaAlert",
    "ReceiverOutcome",
    "ResultTimeout",
    "SendRequest",
    "SendResult",
    "SmsProducer",
    "parse_event",
    "results_actor",
]
