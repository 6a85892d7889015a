"""Helpers for the quota tests: OVH API users at the sandbox, reading events by kind."""

from __future__ import annotations

from typing import Any

import redis

from contracts import CreditUsage, QuotaAlert, SendResult
from tests.helpers import read_events
from worker.ovhcloud.client import make_client


def ovh(sandbox: Any) -> Any:
    """A python-ovh client of the sandbox."""
    return make_client(sandbox.base_url, **sandbox.credentials)


def create_user(sandbox: Any, login: str, **changes: Any) -> None:
    """Create an OVH SMS API user at the sandbox; ``changes`` are then PUT (``quotaInformations``...)."""
    client = ovh(sandbox)
    client.post(f"/sms/{sandbox.service_name}/users", login=login, password="abcd1234")
    if changes:
        client.put(f"/sms/{sandbox.service_name}/users/{login}", **changes)


def results(client: redis.Redis) -> list[SendResult]:
    return [e for e in read_events(client) if isinstance(e, SendResult)]


def usages(client: redis.Redis) -> list[CreditUsage]:
    return [e for e in read_events(client) if isinstance(e, CreditUsage)]


def alerts(client: redis.Redis) -> list[QuotaAlert]:
    return [e for e in read_events(client) if isinstance(e, QuotaAlert)]


def sandbox_spent(sandbox: Any) -> float:
    """Credits the sandbox debited for SMS it accepted (cancelled ones given back)."""
    return sum(sms["credits"] for sms in sandbox.control.sent() if not sms["cancelled"])
