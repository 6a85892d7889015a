"""A local emulator of OVHcloud's SMS API, for tests, the demo and benchmarks.

>>> from worker.sandbox import Sandbox
>>> from worker.ovhcloud.client import make_client
>>> with Sandbox() as sb:
...     client = make_client(sb.base_url, **sb.credentials)
...     client.post(f"/sms/{sb.service_name}/jobs", message="Hi", sender="SANDBOX",
...                 receivers=["+33612345678"], noStopClause=True)["totalCreditsRemoved"]
1.0

``sms-worker sandbox`` (or ``python -m worker.sandbox``) serves one in the foreground.
"""

from .control import SandboxControl, SandboxControlError
from .credits import STOP_MENTION
from .faults import FaultRule
from .sandbox import (
    DEFAULT_APPLICATION_KEY,
    DEFAULT_APPLICATION_SECRET,
    DEFAULT_CONSUMER_KEY,
    Sandbox,
)
from .state import DEFAULT_SERVICE

__all__ = [
    "DEFAULT_APPLICATION_KEY",
    "DEFAULT_APPLICATION_SECRET",
    "DEFAULT_CONSUMER_KEY",
    "DEFAULT_SERVICE",
    "FaultRule",
    "STOP_MENTION",
    "Sandbox",
    "SandboxControl",
    "SandboxControlError",
]
