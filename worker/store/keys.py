"""Every Redis key the worker reads or writes, in one place, named after what it holds.

Lua scripts never build a key: they receive the names made here in ``KEYS`` (see
``worker.store.scripts``). Per-request keys wrap the request id in braces
(``sms-worker:req:{order-7}``); ids cannot contain braces, so no request id can make a key of
one request equal a key of another, or of another kind. Service names and logins are checked
by pattern (``contracts.models.SERVICE_NAME_PATTERN``) before they reach a key, so they cannot
carry the ``:`` that separates them.

TTLs and bounds: per-request keys expire (``request_ttl_s``, ``result_ttl_s``,
``dedupe_ttl_s``); buffers and due sets hold only what is waiting to be sent; attempts live
until settled (with a safety TTL); results queues are capped (``results_queue_max_length``).
"""

from __future__ import annotations

from urllib.parse import quote

from contracts import wire
from contracts.wire import KEY_PREFIX

PREFIX = KEY_PREFIX

# -- per request ------------------------------------------------------------------------------


def seen(request_id: str) -> str:
    """String: the dedupe marker of an accepted or rejected request id (TTL ``dedupe_ttl_s``):
    ``s:<stage token>`` staged, ``r:<token>`` rejected for good, ``t:<queue message id>`` refused
    for a cause that was not the request's own (a new message with that id is a resend)."""
    return f"{PREFIX}seen:{{{request_id}}}"


def request(request_id: str) -> str:
    """Hash of a request in flight: result skeleton, ``reply_to``, counters (``remaining``,
    ``sent``, ``failed``, ``unknown``, ``invalid``), ``credits``, ``error`` (TTL ``request_ttl_s``)."""
    return f"{PREFIX}req:{{{request_id}}}"


def outcomes(request_id: str) -> str:
    """List of a request in flight: JSON fragments of per-receiver outcomes, one push per settlement."""
    return f"{PREFIX}outcomes:{{{request_id}}}"


# The keys a producer reads, defined with the rest of the queue layout in ``contracts.wire``:
#: String: a request's final result, read by ``SmsProducer.wait`` (TTL ``result_ttl_s``).
result = wire.result_key
#: List pushed when a request's result is written: ``SmsProducer.wait`` blocks on it (TTL ``result_ttl_s``).
result_ready = wire.result_ready_key
#: String: the number of parts a split send has (written by the producer, TTL a day).
group = wire.group_key

# -- batch buffers ----------------------------------------------------------------------------


def buffer(batch_key: str) -> str:
    """List per batch key (a hex digest): staged entries ``<arrival ms>|<request id>|<E.164>|<credits>|<reply_to>``."""
    return f"{PREFIX}buf:{batch_key}"


def buffer_meta(batch_key: str) -> str:
    """String per batch key: the JSON of the jobs call body and routing (service, login, lane)."""
    return f"{PREFIX}bufmeta:{batch_key}"


def due(lane: str) -> str:
    """Sorted set per lane: batch keys with entries, scored by when they are due (Redis ms)."""
    return f"{PREFIX}due:{lane}"


def wake(lane: str) -> str:
    """List per lane, pushed when one of its buffers becomes due now; dispatchers of that lane
    block on it (trimmed to a few entries)."""
    return f"{PREFIX}wake:{lane}"


# -- attempts (see worker.attempts.lifecycle) ----------------------------------------------------


def attempt(call_id: str) -> str:
    """Hash per OVH jobs call: state, owner lease, what was claimed, tries, when the last try left
    and its deadline, when it goes stale, OVH's answer once known. TTL ``attempt_ttl_s`` (a safety
    net); once settled, released or taken over, a tombstone (state, by whom, what was published)
    with TTL ``Timing.tombstone_ttl_s`` (``redis_outage_s`` plus a minute)."""
    return f"{PREFIX}attempt:{call_id}"


#: Sorted set of attempts held by a worker (claimed or calling), by claim time (Redis ms): the
#: lease sweep reads it to take over the attempts of workers whose lease expired.
INFLIGHT = PREFIX + "inflight"
#: Sorted set of ambiguous attempts, by when they are next looked at (Redis ms): the reconcilers' work.
RECONCILE = PREFIX + "reconcile"
#: List pushed when an attempt becomes ambiguous: wakes a reconciler at once.
RECONCILE_WAKE = PREFIX + "wake:reconcile"


def lease(token: str) -> str:
    """String per worker lease (value: the worker's name), TTL ``lease_s``: alive while it exists."""
    return f"{PREFIX}lease:{token}"


#: Pattern of every worker lease (``SCAN`` it to count the workers alive).
LEASES = lease("*")


# -- accounting ---------------------------------------------------------------------------------


def quota(service: str, login: str) -> str:
    """Hash per OVH API user, shared by every replica: ``service``, ``login``, ``reserved`` and
    ``spent`` (credits), and when the user has a quota: ``quota``, ``threshold``, ``armed``,
    ``crossings``, ``alert_number``, ``ovh_quota``, ``source``, ``config`` (worker.accounting.quotas)."""
    return f"{PREFIX}quota:{service}:{login}"


#: Set of the quota hashes' keys, for ``sms-worker quotas``.
QUOTAS = PREFIX + "quotas"


def sms(ovh_id: int | str) -> str:
    """Hash per OVH SMS id the worker knows of: ``call_id``, the one call whose proof it is (written
    when OVH's answer names it, or a reconciliation found it; whatever the tracking setting), and
    when tracked the request and receiver it was sent for (``request_id``, ``receiver``,
    ``reply_to``, ``tag``, ``service``, ``login``, ``sent_at`` unix s), for delivery reports and
    replies; ``campaign_dlr``: the delivery status counted in its campaign's statistics
    (lua/_campaign.lua). TTL the longer of ``delivery_tracking_ttl_s`` and
    ``Timing.owned_ttl_s`` (about ``reconcile_deadline_s`` plus 12 minutes with the defaults)."""
    return f"{PREFIX}sms:{ovh_id}"


#: Hash of destination credit rates read from OVH, shared by every replica and restart:
#: country (ISO, lower case) -> JSON ``{"credit": credits per part, "at": unix s}`` or
#: ``{"refused": OVH's reason, "at": unix s}`` (bounded: one field per country).
RATES = PREFIX + "rates"

# -- after the send: delivery reports, replies, STOP, senders (worker.after_send) ----------------

#: Sorted set (pull mode): OVH ids of SMS whose final receipt is still awaited, scored by their
#: next poll (unix ms). settle.lua adds each SMS while ``PULL`` exists; an id leaves on its final
#: receipt, when its poll budget is spent or its ``sms`` hash expired, or when more than
#: ``pull_max_pending`` newer ones came (``RECEIPTS_ORDER``). Key TTL refreshed by the poller (a day).
RECEIPTS = PREFIX + "receipts"
#: List (pull mode): OVH ids in the order settle.lua indexed them into ``RECEIPTS``, at most
#: ``pull_max_pending``: past it the oldest are dropped from both (counted in ``STATS`` under
#: ``dropped:receipts``), so ``RECEIPTS`` never holds more. TTL a day, renewed by each settlement.
RECEIPTS_ORDER = PREFIX + "receipts-order"
#: Hash (pull mode) present while a receipt poller runs: ``first_poll_delay_ms``. settle.lua
#: indexes SMS into ``RECEIPTS`` only while it exists; TTL a few poll rounds, renewed each round.
PULL = PREFIX + "pull"
#: Sorted set of delivery callbacks for SMS ids not recorded yet (their settlement may still be
#: under way), scored by when they are given up (unix ms): JSON members. At most
#: ``ORPHANS_MAX`` members, key TTL the grace period plus a minute.
ORPHANS = PREFIX + "dlr-orphans"
#: Hash: ptt code -> JSON ``{"description", "duration"}`` from ``GET /sms/ptts`` (TTL
#: ptt_cache_ttl_s, renewed by each fetch). At most one field per ptt code (0-9999).
PTTS = PREFIX + "ptts"
#: Set of ptt codes (0-9999) seen in reports and not in ``PTTS`` yet: the worker fetches them. TTL a day.
PTTS_WANTED = PREFIX + "ptts-wanted"

#: Most delivery callbacks kept waiting for their SMS id to be recorded.
ORPHANS_MAX = 10_000
#: How long a receiver's last SMS is kept for tying replies to it (seconds): OVH takes replies
#: for about 48 hours.
REPLY_WINDOW_S = 48 * 3600
#: How long an opt-out is kept beside the synced blacklist (seconds).
OPTOUT_KEEP_S = 7 * 86_400


def last_sent(receiver: str) -> str:
    """Hash per receiver (E.164): the last SMS a delivery report was published for (``request_id``,
    ``ovh_id``, ``tag``, ``reply_to``, ``service``, ``login``, ``sent_at``), to tie a reply to the
    request it answers. TTL ``REPLY_WINDOW_S``."""
    return f"{PREFIX}last:{receiver}"


def incoming(service: str, incoming_id: str) -> str:
    """String per (service, OVH incoming id): the reply was published (dedupe; TTL dedupe_ttl_s)."""
    return f"{PREFIX}incoming:{service}:{incoming_id}"


def incoming_cursor(service: str) -> str:
    """String per service: creation time (unix s) up to which pull mode has read ``GET .../incoming`` (TTL a week)."""
    return f"{PREFIX}incoming-cursor:{service}"


def blacklist(service: str) -> str:
    """Set per service: the account's OVH blacklist (E.164) as of the last sync, replaced whole by
    each sync. Bounded by OVH's list; no TTL, since an expiry would let commercial SMS reach
    numbers that opted out."""
    return f"{PREFIX}blacklist:{service}"


def optouts(service: str) -> str:
    """Sorted set per service: numbers (E.164) seen opting out (STOP), scored by when (unix ms), so
    they are refused before the next sync lists them; entries older than ``OPTOUT_KEEP_S`` are trimmed."""
    return f"{PREFIX}optouts:{service}"


def blacklist_gen(service: str) -> str:
    """Counter per service, bumped whenever ``blacklist`` or ``optouts`` changes: the accept stage
    reloads its in-memory copy when it moves. One per account (bounded)."""
    return f"{PREFIX}blacklist-gen:{service}"


def senders(service: str) -> str:
    """Hash per service: sender -> OVH status (``enable``, ``disable``, ``refused``,
    ``waitingValidation``, or ``missing``); field ``*`` present when it holds every sender OVH
    lists. TTL sender_cache_ttl_s, renewed by each sync."""
    return f"{PREFIX}senders:{service}"


def job_lease(job: str, scope: str) -> str:
    """String per background job and scope (``blacklist``, ``<service>``): whichever replica sets it
    does that job this period (TTL: the period)."""
    return f"{PREFIX}job-lease:{job}:{scope}"


def pull_budget(minute: int) -> str:
    """Counter per minute (unix minute): OVH calls the pull pollers made in it (TTL two minutes)."""
    return f"{PREFIX}pull-budget:{minute}"


#: Hash of counters the scripts keep: ``dropped:<queue>`` (events dropped by a results queue's cap),
#: ``dropped:receipts`` (SMS pull mode stopped polling, past ``pull_max_pending``). Bounded: one
#: field per queue.
STATS = PREFIX + "stats"

# -- campaigns (worker.campaigns, sms-worker campaign) -----------------------------------------


def campaign_stats(service: str, tag: str) -> str:
    """Hash per SMS account and tag: the campaign's counters, kept at settlement and from delivery
    reports (fields in ``lua/_campaign.lua``); TTL ``campaign_stats_ttl_s``, refreshed by every
    write; a bounded set of fields. The tag is percent-encoded: a tag may hold any character."""
    return f"{PREFIX}campaign:{service}:{quote(tag, safe='')}"


def campaign_numbers(campaign_id: str) -> str:
    """Hash per campaign id of ``sms-worker campaign send``: E.164 receiver -> the row of the file
    that claimed it, so a number listed twice is sent once, across resumed runs too (TTL
    ``dedupe_ttl_s``, as long as the worker remembers the rows' request ids)."""
    return f"{PREFIX}campaign-numbers:{{{campaign_id}}}"


def campaign_queued(campaign_id: str) -> str:
    """Bitmap per campaign id of ``sms-worker campaign send``: bit ``line`` set once that row's request
    was published, so a resumed run does not queue it again even before the worker has seen it
    (one bit per line of the file; TTL ``dedupe_ttl_s``)."""
    return f"{PREFIX}campaign-queued:{{{campaign_id}}}"


# -- consumption per period (worker.accounting.usage, sms-worker usage) ------------------------

#: Most distinct values of one dimension (users, tags or senders) counted apart in one day of
#: ``usage``; the SMS of further values that day are counted together (``<metric>|<dimension>``).
USAGE_MAX_VALUES = 500


def usage(service: str, day: str) -> str:
    """Hash per SMS account and day (``YYYY-MM-DD`` in ``usage_timezone``): the SMS and credits
    settled that day, per user, tag and sender (fields in ``lua/_usage.lua``), written by
    ``settle.lua``. TTL ``usage_ttl_s`` (400 days by default) from the day's last settlement;
    bounded: 3 metrics for at most ``USAGE_MAX_VALUES`` + 1 values of each of 3 dimensions."""
    return f"{PREFIX}usage:{service}:{day}"


# -- bulk campaigns (worker.campaigns.bulk, worker.attempts.bulk) -------------------------------
# Every key of a bulk campaign lives ``bulk_document_ttl_s`` (refreshed when the campaign is sent
# again); the sets below hold only documents waiting, in flight or unresolved.


def bulk_campaign(campaign_id: str) -> str:
    """Hash per bulk campaign: ``state`` (running, paused, cancelled), ``service``, ``login``,
    ``lane``, ``tag``, ``body`` (the jobs call without receivers, JSON), ``documents``, ``rows``,
    ``commercial``, ``reply_to``, ``skeleton`` (a row result's shared fields, JSON), counters
    (``docs_sent``, ``docs_failed``, ``rows_sent``, ``rows_failed``...), the breaker's window."""
    return f"{PREFIX}bulk:{{{campaign_id}}}"


def bulk_document(campaign_id: str, number: int) -> str:
    """String: document ``number`` of a bulk campaign, OVH's CSV (``number;var1;var2``), UTF-8."""
    return f"{PREFIX}bulk-doc:{{{campaign_id}}}:{number}"


def bulk_rows(campaign_id: str) -> str:
    """Hash per bulk campaign: file line -> ``<E.164>|<document number>|<estimated credits>`` of
    each row put in a document (one field per row; the receiver -> line map is
    ``campaign_numbers``)."""
    return f"{PREFIX}bulk-rows:{{{campaign_id}}}"


def bulk_url(secret: str) -> str:
    """String per document URL secret (32 hex digits): ``<campaign id>/<number>``; its TTL is the
    URL's expiry (``sms-worker inbound`` serves the document while it exists)."""
    return f"{PREFIX}bulk-url:{secret}"


def bulk_attempt(campaign_id: str, number: int) -> str:
    """Hash per document: its jobs call's attempt (``worker.attempts.bulk``): ``state``, ``owner``,
    ``worker``, ``called_at``, ``tries``, ``report``, ``reason``, ``absent_after``, ``deadline``.
    Kept once settled (``sent``, ``failed``, ``cancelled``): the proof a re-run sends nothing twice."""
    return f"{PREFIX}bulk-attempt:{{{campaign_id}}}:{number}"


#: Sorted set of ``<campaign id>/<number>`` -> Redis ms a document is due (start time, quiet hours).
BULK_DUE = PREFIX + "bulk-due"
#: Sorted set of ``<campaign id>/<number>`` claimed or calling -> claim ms (the lease sweep's index).
BULK_INFLIGHT = PREFIX + "bulk-inflight"
#: Sorted set of ``<campaign id>/<number>`` ambiguous -> Redis ms of its next look.
BULK_RECONCILE = PREFIX + "bulk-reconcile"
#: Sorted set of campaign ids with a document sent and rows without a result -> Redis ms of the
#: next look at OVH's records for them (tag listings); also where ``inbound`` maps callbacks.
BULK_TRACKED = PREFIX + "bulk-tracked"


def bulk_tag(service: str, tag: str) -> str:
    """String per SMS account and tag: the id of the bulk campaign sent with that tag (for
    ``campaign pause|resume|cancel --tag``); TTL ``bulk_document_ttl_s``."""
    return f"{PREFIX}bulk-tag:{service}:{quote(tag, safe='')}"


def bulk_seen(campaign_id: str) -> str:
    """Set per bulk campaign: OVH SMS ids already mapped to a row (bounded by the campaign's rows)."""
    return f"{PREFIX}bulk-seen:{{{campaign_id}}}"


# -- the shared rate limiter (worker.ovhcloud.rate_limit) -------------------------------------


def rate_limit(limiter_key: str) -> str:
    """Hash per OVH consumer key (a hash of it, never the key): the token bucket."""
    # The braces are a cluster hash tag: the bucket and its waiters share one slot.
    return f"{PREFIX}ratelimit:{{{limiter_key}}}"


def rate_waiters(limiter_key: str, lane: str) -> str:
    """Sorted set per consumer key and lane: live waiters for a call slot, scored by expiry (us)."""
    return f"{PREFIX}ratewait:{{{limiter_key}}}:{lane}"


# -- dramatiq's layout (its Redis broker owns these; written down once in ``contracts.wire``) ----
#: List of a queue's message ids (bounded by producers; results queues by ``results_queue_max_length``).
queue = wire.queue_key
#: Hash of a queue's messages, id -> envelope; an entry leaves when its message is acked or dead-lettered.
queue_messages = wire.messages_key
#: Sorted set of a queue's dead-lettered ids by time (ms); dramatiq drops them after 7 days.
dead_letters = wire.dead_letters_key
#: Hash of a queue's dead letters, id -> envelope (bounded as ``dead_letters``).
dead_letter_messages = wire.dead_letter_messages_key
#: Set of the ids one broker fetched from a queue and has not acked (at most its prefetch).
acks = wire.acks_key
