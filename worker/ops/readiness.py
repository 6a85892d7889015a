"""Readiness: can this process do its work? Redis answers, OVH accepts the credentials, the
default sender is usable.

The same checks run twice: once before ``sms-worker run`` starts (a failure is one line and
exit 2), then behind ``/readyz``. Redis is pinged when ``/readyz`` is asked (one round trip
with a short timeout). OVH is never called on the request path: a background thread checks it
at start and every ``refresh_s`` (one signed GET, taking a rate-limit slot of the background
lane below every send lane, so it never delays a send), and ``/readyz`` reports its last verdict.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import ovh
import ovh.exceptions
import redis
import requests

from contracts.redis_connection import connect
from worker.ovhcloud.client import describe_error
from worker.ovhcloud.rate_limit import BACKGROUND_LANE, RateLimiter

log = logging.getLogger(__name__)

#: How often the OVH verdict of ``/readyz`` is refreshed (seconds).
OVH_REFRESH_S = 60.0
#: Longest a Redis ping of ``/readyz`` or of the start checks waits (seconds).
REDIS_TIMEOUT_S = 2.0
#: Longest the background check waits for a rate-limit slot before trying again later (seconds).
SLOT_TIMEOUT_S = 10.0


class NotReady(Exception):
    """One line saying what is not ready and why."""


def redis_client(url: str, *, timeout_s: float = REDIS_TIMEOUT_S) -> redis.Redis:
    """A client for checks: every connect and read bounded by ``timeout_s``.

    Raises ``ValueError`` (without the URL, which may hold a password) when ``url`` is malformed.
    """
    return connect(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)


def check_redis(client: redis.Redis) -> None:
    """PING; ``NotReady`` when Redis does not answer (or refuses the password)."""
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise NotReady(f"Redis refused the password in REDIS_URL: {exc}") from None
    except (redis.RedisError, OSError) as exc:
        raise NotReady(f"Redis does not answer: {exc}") from None


def check_ovh(client: ovh.Client, *, endpoint: str, service: str | None, sender: str | None) -> None:
    """One signed GET that proves the credentials, and the default sender when there is one.

    ``GET /sms/{service}/senders/{sender}`` (the sender must exist and be ``enable``), else
    ``GET /sms/{service}``, else ``GET /sms``. Raises ``NotReady`` with one line.
    """
    if service is None:
        path = "/sms"
    elif sender is None:
        path = f"/sms/{service}"
    else:
        path = f"/sms/{service}/senders/{sender}"
    try:
        answer: Any = client.get(path)
    except ovh.exceptions.ResourceNotFoundError:
        if sender is not None and service is not None and _exists(client, f"/sms/{service}"):
            raise NotReady(f"sender {sender!r} (SMS_WORKER_SENDER) does not exist in SMS account {service}") from None
        raise NotReady(f"SMS account {service!r} (SMS_WORKER_SERVICE_NAME) not found at OVH") from None
    except (ovh.exceptions.HTTPError, requests.RequestException) as exc:
        raise NotReady(f"OVH API at {endpoint} does not answer: {describe_error(exc)}") from None
    except ovh.exceptions.APIError as exc:
        raise NotReady(f"OVH refused the credentials (GET {path}): {describe_error(exc)}") from None
    if sender is not None and isinstance(answer, dict) and answer.get("status") != "enable":
        raise NotReady(
            f"sender {sender!r} (SMS_WORKER_SENDER) is not enabled in SMS account {service} "
            f"(status {answer.get('status')}): OVH refuses sends from it"
        )


def _exists(client: ovh.Client, path: str) -> bool:
    try:
        client.get(path)
    except ovh.exceptions.ResourceNotFoundError:
        return False
    except ovh.exceptions.APIError:
        return True  # some other refusal: not a missing account
    return True


class Readiness:
    """``/readyz``'s verdict: ``reason()`` is ``None`` when ready, else one line.

    ``ovh_check`` raises ``NotReady`` (``check_ovh`` bound to a client); it runs in a background
    thread at ``start`` and every ``refresh_s``, after a background-lane slot of ``limiter``.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        ovh_check: Callable[[], None],
        *,
        limiter: RateLimiter | None = None,
        refresh_s: float = OVH_REFRESH_S,
    ) -> None:
        self.redis = redis_client
        self.ovh_check = ovh_check
        self.limiter = limiter
        self.refresh_s = refresh_s
        self._ovh_reason: str | None = "OVH credentials not checked yet"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reason(self) -> str | None:
        try:
            check_redis(self.redis)
        except NotReady as exc:
            return str(exc)
        return self._ovh_reason

    def refresh_ovh(self) -> bool:
        """Check OVH now; ``False`` when it could not be checked (no rate-limit slot, Redis down)."""
        try:
            if self.limiter is not None and not self.limiter.acquire(BACKGROUND_LANE, timeout_s=SLOT_TIMEOUT_S):
                return False
        except redis.RedisError:
            return False  # Redis is down: /readyz already says so; check OVH when it is back
        try:
            self.ovh_check()
        except NotReady as exc:
            if self._ovh_reason != str(exc):
                log.warning("not ready: %s", exc)
            self._ovh_reason = str(exc)
        except Exception as exc:  # never let the thread die: say it
            self._ovh_reason = f"OVH check failed: {describe_error(exc)}"
            log.warning("not ready: %s", self._ovh_reason)
        else:
            if self._ovh_reason is not None:
                log.info("OVH accepts the credentials")
            self._ovh_reason = None
        return True

    def start(self) -> Readiness:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sms-readiness", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(SLOT_TIMEOUT_S + 5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            checked = self.refresh_ovh()
            self._stop.wait(self.refresh_s if checked else min(5.0, self.refresh_s))
