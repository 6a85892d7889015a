"""The OVH gateway: calls through python-ovh, their failures sorted for the retry layer.

python-ovh never retries and raises one exception per HTTP outcome; this module decides, for
each, whether the call surely did not take effect (``RetryableError``), was refused
(``PermanentError``) or may have taken effect (``AmbiguousError``). The HTTP status decides
before the body: a 429 or 503 whose body is a proxy's HTML page is still "not carried out"
(python-ovh raises ``InvalidResponse`` for it without the response, so a ``requests`` response
hook keeps the status). python-ovh fetches OVH's clock (``GET /auth/time``) lazily inside the
first signed call, where its timeout would look like an ambiguous POST: the gateway fetches it
when it makes the client, and a failure there is "not sent".

One ``ovh.Client`` per thread, because a ``requests.Session`` is not meant to be shared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ovh
import ovh.exceptions
import requests
from urllib3.exceptions import NewConnectionError

from worker.errors import AmbiguousError, GatewayError, PermanentError, RetryableError
from worker.ovhcloud.jobs import DocumentJobCall, JobCall, SendingReport

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


def classify(exc: ovh.exceptions.APIError, response: requests.Response | None = None) -> GatewayError:
    """Map a python-ovh exception onto the worker's tree, keeping OVH's details.

    ``response`` is the HTTP response the exception came from when python-ovh did not attach it
    (``InvalidResponse``).
    """
    if getattr(exc, "response", None) is not None:  # (a Response is falsy when not ok: test for None)
        response = exc.response
    status = response.status_code if response is not None else None
    query_id = getattr(exc, "query_id", None) or (response.headers.get("X-Ovh-QueryId") if response else None)
    details: dict[str, Any] = {"ovh_class": type(exc).__name__, "status": status, "query_id": query_id}
    message = " ".join((str(exc) or type(exc).__name__).split())  # OVH messages may span lines
    if isinstance(exc, ovh.exceptions.HTTPError):
        cause = exc.args[1] if len(exc.args) > 1 else exc.__cause__
        if _never_left(cause):
            return RetryableError(f"could not connect to OVH: {cause}", **details)
        return AmbiguousError(f"connection to OVH lost after the request was sent: {cause}", **details)
    if status in RETRYABLE_STATUSES:
        return RetryableError(f"OVH answered {status}: {message}", retry_after_s=_retry_after(response), **details)
    if isinstance(exc, ovh.exceptions.InvalidResponse):
        return AmbiguousError(f"unreadable answer from OVH (HTTP {status}): {message}", **details)
    if status is not None and status >= 500:
        return AmbiguousError(f"OVH answered {status}: {message}", **details)
    return PermanentError(message, **details)


class OvhGateway:
    """Calls OVH. ``client_factory`` builds one ``ovh.Client`` per thread."""

    def __init__(self, client_factory: Callable[[], ovh.Client]) -> None:
        self._client_factory = client_factory
        self._local = threading.local()

    @property
    def client(self) -> ovh.Client:
        """This thread's client, with OVH's clock already read (``RetryableError`` if it cannot be)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._client_factory()
            client._session.hooks["response"].append(self._keep_response)
            try:
                client.time_delta  # noqa: B018  (the property fetches GET /auth/time once)
            except ovh.exceptions.APIError as exc:
                failure = classify(exc, self._last_response())
                raise RetryableError(f"could not read OVH's clock: {failure.message}", status=failure.status) from exc
            self._local.client = client
        return client

    def _keep_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._local.response = response

    def _last_response(self) -> requests.Response | None:
        return getattr(self._local, "response", None)

    def send_job(self, service: str, login: str | None, body: JobCall | DocumentJobCall) -> SendingReport:
        """``POST /sms/{service}[/users/{login}]/jobs``; returns OVH's ``sms.SmsSendingReport``."""
        path = f"/sms/{service}/jobs" if login is None else f"/sms/{service}/users/{login}/jobs"
        client = self.client
        self._local.response = None
        try:
            report: SendingReport = client.post(path, **body)
        except ovh.exceptions.APIError as exc:
            raise classify(exc, self._last_response()) from exc
        return report

    def get(self, path: str, **params: Any) -> Any:
        """A signed GET (reconciliation, balance, senders...), its failures classified."""
        client = self.client
        self._local.response = None
        try:
            return client.get(path, **params)
        except ovh.exceptions.APIError as exc:
            raise classify(exc, self._last_response()) from exc

    def put(self, path: str, **body: Any) -> Any:
        """A signed PUT (callbacks setup, users), its failures classified."""
        client = self.client
        self._local.response = None
        try:
            return client.put(path, **body)
        except ovh.exceptions.APIError as exc:
            raise classify(exc, self._last_response()) from exc

    def delete(self, path: str) -> Any:
        """A signed DELETE (a pending job of a cancelled campaign), its failures classified."""
        client = self.client
        self._local.response = None
        try:
            return client.delete(path)
        except ovh.exceptions.APIError as exc:
            raise classify(exc, self._last_response()) from exc

    def ovh_now(self) -> float:
        """OVH's clock now (unix seconds), from the delta python-ovh read from ``/auth/time``."""
        return time.time() + float(self.client.time_delta)
