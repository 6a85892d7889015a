"""Every Redis key the worker writes, in one place, named after what it holds.

The Lua scripts receive these prefixes as arguments rather than spelling them out.
"""

from __future__ import annotations

PREFIX = "sms-worker:"

#: String, set once per accepted or rejected request id: the dedupe marker (TTL dedupe_ttl_s).
SEEN = PREFIX + "seen:"
#: Hash per in-flight request: result skeleton, counters, outcome fragments' key.
REQUEST = PREFIX + "req:"
#: List per in-flight request: JSON fragments of per-receiver outcomes, appended per call.
OUTCOMES = PREFIX + "outcomes:"
#: List per batch key: staged entries ``<arrival ms>|<request id>|<receiver>|<credits>``.
BUFFER = PREFIX + "buf:"
#: String per batch key: the JSON of the jobs call body and routing (service, login, lane).
BUFFER_META = PREFIX + "bufmeta:"
#: Sorted set per lane: batch keys with entries, scored by when they are due (ms).
DUE = PREFIX + "due:"
#: List the accept stage pushes to when a buffer is due now; dispatchers block on it.
WAKE = PREFIX + "wake"
#: Hash per OVH call in flight: what was claimed, recorded before the call is made.
ATTEMPT = PREFIX + "attempt:"
#: Sorted set of attempts in flight, by start time (ms): the recovery sweep reads it.
ATTEMPTS = PREFIX + "attempts"
#: Hash per OVH consumer key (a hash of it, never the key): the shared rate limiter's bucket.
RATE_LIMIT = PREFIX + "ratelimit:"
#: Sorted set per consumer key and lane: live waiters for a call slot, scored by expiry (us).
RATE_WAITERS = PREFIX + "ratewait:"
#: Hash per OVH API user (``quota:<service>:<login>``), shared by every replica: ``service``,
#: ``login``, ``reserved`` and ``spent`` (credits, floats), and when the user has a quota:
#: ``quota`` (credits), ``threshold`` (alert threshold, credits), ``armed`` (1 while the next
#: crossing of the threshold alerts), ``crossings`` (alerts so far), ``alert_number``,
#: ``ovh_quota`` (1 when OVH itself holds the quota: the account's creditsLeft does not pay),
#: ``source`` (``config:<digest>`` or ``ovh``: what set the quota last), ``config`` (the config
#: entry applied last). Quota left = quota - reserved - spent.
QUOTA = PREFIX + "quota:"
#: Set of the quota hashes' keys, for ``sms-worker quotas``.
QUOTAS = PREFIX + "quotas"
#: Hash per OVH SMS id, written at settlement and kept ``delivery_tracking_ttl_s``: which
#: request and receiver it was sent for (``request_id``, ``receiver``, ``reply_to``, ``tag``,
#: ``service``, ``login``, ``call_id``, ``sent_at`` unix s). Delivery reports and replies are
#: mapped back to their request with it.
SMS = PREFIX + "sms:"


def seen(request_id: str) -> str:
    return SEEN + request_id


def request(request_id: str) -> str:
    return REQUEST + request_id


def buffer(batch_key: str) -> str:
    return BUFFER + batch_key


def due(lane: str) -> str:
    return DUE + lane


def attempt(call_id: str) -> str:
    return ATTEMPT + call_id


def quota(service: str, login: str) -> str:
    return f"{QUOTA}{service}:{login}"


def sms(ovh_id: int | str) -> str:
    return SMS + str(ovh_id)


def rate_limit(limiter_key: str) -> str:
    # The braces are a cluster hash tag: the bucket and its waiters share one slot.
    return RATE_LIMIT + "{" + limiter_key + "}"


def rate_waiters(limiter_key: str, lane: str) -> str:
    return RATE_WAITERS + "{" + limiter_key + "}:" + lane
