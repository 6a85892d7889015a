"""A local emulator of OVHcloud's SMS API, for tests, the demo and benchmarks.

>>> from ovh_sandbox import Sandbox
>>> from worker.ovhcloud.client import make_client
>>> with Sandbox() as sb:
...     client = make_client(sb.base_url, **sb.credentials)
...     client.post(f"/sms/{sb.service_name}/jobs", message="Hi", sender="SANDBOX",
...                 receivers=["+33612345678"], noStopClause=True)["totalCreditsRemoved"]
1.0

``sms-worker sandbox`` (or ``python -m ovh_sandbox``) serves one in the foreground.
"""

from ovh_sandbox.billing import STOP_MENTION
from ovh_sandbox.control import SandboxControl, SandboxControlError
from ovh_sandbox.faults import FaultRule
from ovh_sandbox.sandbox import (
    DEFAULT_APPLICATION_KEY,
    DEFAULT_APPLICATION_SECRET,
    DEFAULT_CONSUMER_KEY,
    Sandbox,
)
from ovh_sandbox.state import DEFAULT_SERVICE

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
