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

# -- after the send: delivery reports, replies, STOP, blacklist and senders ----------------------
# (written by worker/inbound/ and worker/ovhcloud/{blacklist,senders}.py)

#: Sorted set (pull mode): OVH ids of SMS whose final receipt is still awaited, scored by their
#: next poll (unix ms). settle.lua adds each SMS while ``PULL`` exists; an id leaves on its final
#: receipt, when its poll budget is spent or its ``SMS`` hash expired. Key TTL refreshed by the
#: poller (a day), so it is bounded by the SMS sent in a day of pull mode.
RECEIPTS = PREFIX + "receipts"
#: Hash (pull mode) present while a receipt poller runs: ``first_poll_delay_ms``. settle.lua
#: indexes SMS into ``RECEIPTS`` only while it exists; TTL a few poll rounds, renewed each round.
PULL = PREFIX + "pull"
#: Sorted set of delivery callbacks for SMS ids not recorded yet (their settlement may still be
#: under way), scored by when they are given up (unix ms): JSON members. At most
#: ``ORPHANS_MAX`` members, key TTL the grace period plus a minute.
ORPHANS = PREFIX + "dlr-orphans"
#: Hash per receiver (E.164): the last SMS a delivery report was published for (``request_id``,
#: ``ovh_id``, ``tag``, ``reply_to``, ``service``, ``login``, ``sent_at``), to tie a reply to the
#: request it answers. TTL ``REPLY_WINDOW_S`` (OVH takes replies for about 48 h).
LAST_SENT = PREFIX + "last:"
#: String per (service, OVH incoming id): the reply was published (dedupe; TTL dedupe_ttl_s).
INCOMING = PREFIX + "incoming:"
#: String per service: creation time (unix s) up to which pull mode has read ``GET .../incoming``.
#: One per account (bounded), TTL a week.
INCOMING_CURSOR = PREFIX + "incoming-cursor:"
#: Set per service: the account's OVH blacklist (E.164) as of the last sync, replaced whole by
#: each sync. Bounded by OVH's list; no TTL, since an expiry would let commercial SMS reach
#: numbers that opted out.
BLACKLIST = PREFIX + "blacklist:"
#: Sorted set per service: numbers (E.164) seen opting out (STOP), scored by when (unix ms), so
#: they are refused before the next sync lists them. Entries older than ``OPTOUT_KEEP_S`` are
#: trimmed at each sync and each opt-out (OVH's list has them by then).
OPTOUTS = PREFIX + "optouts:"
#: Counter per service, bumped whenever ``BLACKLIST`` or ``OPTOUTS`` changes: the accept stage
#: reloads its in-memory copy when it moves. One per account (bounded).
BLACKLIST_GEN = PREFIX + "blacklist-gen:"
#: Hash per service: sender -> OVH status (``enable``, ``disable``, ``refused``,
#: ``waitingValidation``, or ``missing`` when OVH does not know it); field ``*`` present when the
#: hash holds every sender OVH lists. TTL sender_cache_ttl_s, renewed by each sync.
SENDERS = PREFIX + "senders:"
#: Hash: ptt code -> JSON ``{"description", "duration"}`` from ``GET /sms/ptts`` (TTL
#: ptt_cache_ttl_s, renewed by each fetch). At most one field per ptt code (0-9999).
PTTS = PREFIX + "ptts"
#: Set of ptt codes (0-9999) seen in reports and not in ``PTTS`` yet: the worker fetches them.
#: TTL a day.
PTTS_WANTED = PREFIX + "ptts-wanted"
#: String per background job and scope (``lease:blacklist:<service>``...): whichever replica sets
#: it does that job this period (TTL: the period).
LEASE = PREFIX + "lease:"
#: Counter per minute (unix minute): OVH calls the pull pollers made in it (TTL two minutes).
PULL_BUDGET = PREFIX + "pull-budget:"

#: Most delivery callbacks kept waiting for their SMS id to be recorded.
ORPHANS_MAX = 10_000
#: How long a receiver's last SMS is kept for tying replies to it (seconds): OVH takes replies
#: for about 48 hours.
REPLY_WINDOW_S = 48 * 3600
#: How long an opt-out is kept beside the synced blacklist (seconds).
OPTOUT_KEEP_S = 7 * 86_400


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


def last_sent(receiver: str) -> str:
    return LAST_SENT + receiver


def incoming(service: str, incoming_id: str) -> str:
    return f"{INCOMING}{service}:{incoming_id}"


def incoming_cursor(service: str) -> str:
    return INCOMING_CURSOR + service


def blacklist(service: str) -> str:
    return BLACKLIST + service


def optouts(service: str) -> str:
    return OPTOUTS + service


def blacklist_gen(service: str) -> str:
    return BLACKLIST_GEN + service


def senders(service: str) -> str:
    return SENDERS + service


def lease(job: str, scope: str) -> str:
    return f"{LEASE}{job}:{scope}"


def pull_budget(minute: int) -> str:
    return f"{PULL_BUDGET}{minute}"
