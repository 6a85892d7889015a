"""Request signatures and consumer-key rights, checked exactly as python-ovh signs.

python-ovh sends ``X-Ovh-Application``, ``X-Ovh-Consumer``, ``X-Ovh-Timestamp`` and
``X-Ovh-Signature = "$1$" + sha1(AS + "+" + CK + "+" + METHOD + "+" + URL + "+" + BODY + "+" + TS)``
where URL is the full URL it requested (scheme, host, ``/1.0`` path and query string) and BODY
the raw JSON body ("" for GET and DELETE). The checks and their answers, in order:

==============================  ======  ====================  ===============================
failure                         status  errorCode             python-ovh raises
==============================  ======  ====================  ===============================
missing or unknown app key      403     INVALID_KEY           InvalidKey
missing consumer key            403     NOT_CREDENTIAL        NotCredential
unknown consumer key            403     INVALID_CREDENTIAL    InvalidCredential
missing/unparsable timestamp    400     INVALID_SIGNATURE     BadParametersError
timestamp off by > max skew     400     QUERY_TIME_OUT        BadParametersError
signature mismatch              400     INVALID_SIGNATURE     BadParametersError
call outside the key's rules    403     NOT_GRANTED_CALL      NotGrantedCall
==============================  ======  ====================  ===============================
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ovh_sandbox.ovh_errors import OvhError

#: Largest difference (seconds) allowed between ``X-Ovh-Timestamp`` and the sandbox's clock.
#: python-ovh corrects its clock with ``GET /auth/time``, so an honest client is within 1 s.
DEFAULT_MAX_SKEW_S = 60

METHODS = ("GET", "POST", "PUT", "DELETE")


def signature(secret: str, consumer_key: str, method: str, url: str, body: str, timestamp: str) -> str:
    digest = hashlib.sha1("+".join([secret, consumer_key, method.upper(), url, body, timestamp]).encode())
    return "$1$" + digest.hexdigest()


@dataclass(frozen=True)
class AccessRule:
    """One right of a consumer key, as OVH's ``accessRules``: ``path`` may hold ``*`` wildcards."""

    method: str
    path: str

    def allows(self, method: str, path: str) -> bool:
        pattern = "^" + re.escape(self.path).replace(r"\*", ".*") + "$"
        return self.method == method and re.match(pattern, path) is not None


FULL_ACCESS = tuple(AccessRule(method, "/*") for method in METHODS)


class Authenticator:
    def __init__(self, application_key: str, application_secret: str, *, max_skew_s: float) -> None:
        self.application_key = application_key
        self.application_secret = application_secret
        self.max_skew_s = max_skew_s
        self._rules: dict[str, tuple[AccessRule, ...]] = {}
        self._lock = threading.Lock()

    def add_consumer_key(self, rules: Iterable[AccessRule], key: str | None = None) -> str:
        key = key or secrets.token_hex(16)
        with self._lock:
            self._rules[key] = tuple(rules)
        return key

    def revoke(self, key: str) -> bool:
        with self._lock:
            return self._rules.pop(key, None) is not None

    def check(self, method: str, url: str, api_path: str, body: str, headers: Mapping[str, str], now: float) -> str:
        """The consumer key of a correctly signed call allowed by its rules; raises OvhError."""
        if headers.get("X-Ovh-Application") != self.application_key:
            raise OvhError(403, "Invalid application key", error_code="INVALID_KEY")
        consumer_key = headers.get("X-Ovh-Consumer")
        if not consumer_key:
            raise OvhError(403, "You must login first", error_code="NOT_CREDENTIAL")
        with self._lock:
            rules = self._rules.get(consumer_key)
        if rules is None:
            raise OvhError(403, "This credential does not exist", error_code="INVALID_CREDENTIAL")
        timestamp = headers.get("X-Ovh-Timestamp", "")
        if not timestamp.isdigit():
            raise OvhError(400, "Invalid signature", error_code="INVALID_SIGNATURE")
        if abs(int(timestamp) - now) > self.max_skew_s:
            raise OvhError(400, "Query out of time", error_code="QUERY_TIME_OUT")
        expected = signature(self.application_secret, consumer_key, method, url, body, timestamp)
        if not hmac.compare_digest(headers.get("X-Ovh-Signature", ""), expected):
            raise OvhError(400, "Invalid signature", error_code="INVALID_SIGNATURE")
        if not any(rule.allows(method, api_path) for rule in rules):
            raise OvhError(403, "This call has not been granted", error_code="NOT_GRANTED_CALL")
        return consumer_key
