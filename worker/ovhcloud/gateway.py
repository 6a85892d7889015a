"""The OVH gateway: one jobs call through python-ovh, its failures sorted for the retry layer.

python-ovh never retries and raises one exception per HTTP outcome; this module decides, for
each, whether the call surely did not take effect (``RetryableError``), was refused
(``PermanentError``) or may have taken effect (``AmbiguousError``). One ``ovh.Client`` per
thread, because a ``requests.Session`` is not meant to be shared between threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ovh
import ovh.exceptions
import requests
from urllib3.exceptions import NewConnectionError

from ..errors import AmbiguousError, GatewayError, PermanentError, RetryableError

#: HTTP statuses after which OVH surely did not carry the call out.
RETRYABLE_STATUSES = {429, 503}


def _retry_after(response: requests.Response | None) -> float | None:
    if response is None:
        return None
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _never_left(error: BaseException | None) -> bool:
    """True when a transport error happened before the request could reach the server."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(error, requests.exceptions.ConnectionError):
        reason = error.args[0] if error.args else None
        reason = getattr(reason, "reason", reason)  # urllib3 MaxRetryError wraps the cause
        return isinstance(reason, NewConnectionError | ConnectionRefusedError)
    return False


def classify(exc: ovh.exceptions.APIError) -> GatewayError:
    """Map a python-ovh exception onto the worker's tree, keeping OVH's details."""
    response = getattr(exc, "response", None)
    status = response.status_code if response is not None else None
    details: dict[str, Any] = {
        "ovh_class": type(exc).__name__,
        "status": status,
        "query_id": getattr(exc, "query_id", None),
    }
    message = str(exc) or type(exc).__name__
    if isinstance(exc, ovh.exceptions.HTTPError):
        cause = exc.args[1] if len(exc.args) > 1 else exc.__cause__
        if _never_left(cause):
            return RetryableError(f"could not connect to OVH: {cause}", **details)
        return AmbiguousError(f"connection to OVH lost after the request was sent: {cause}", **details)
    if isinstance(exc, ovh.exceptions.InvalidResponse):
        return AmbiguousError(f"unreadable answer from OVH: {message}", **details)
    if status in RETRYABLE_STATUSES:
        return RetryableError(message, retry_after_s=_retry_after(response), **details)
    if status is not None and status >= 500:
        return AmbiguousError(f"OVH answered {status}: {message}", **details)
    return PermanentError(message, **details)


class OvhGateway:
    """Sends jobs calls. ``client_factory`` builds one ``ovh.Client`` per thread."""

    def __init__(self, client_factory: Callable[[], ovh.Client]) -> None:
        self._client_factory = client_factory
        self._local = threading.local()

    @property
    def client(self) -> ovh.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._client_factory()
        return client

    def send_job(self, service: str, login: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /sms/{service}[/users/{login}]/jobs``; returns OVH's ``sms.SmsSendingReport``."""
        path = f"/sms/{service}/jobs" if login is None else f"/sms/{service}/users/{login}/jobs"
        try:
            return self.client.post(path, **body)
        except ovh.exceptions.APIError as exc:
            raise classify(exc) from exc
