-- bulk: the fenced transitions of a bulk document's jobs call (worker/attempts/bulk.py), the
-- attempt lifecycle of lifecycle.py with a document in place of receivers:
--
--   due ──claim──▶ calling ──settle──▶ sent | failed            (OVH answered)
--    ▲               │  ▲   ╲
--    │        uncall ▼  │ call ╲ ambiguous (timeout after sending, 5xx, owner lost its lease)
--    ├── release ── claimed     ▼
--    │  (never called)        ambiguous ──settle (proof: an SMS with the tag, a pending job)──▶ sent
--    └──────── absent (no proof after the grace) ◀──┘
--
-- The attempt hash is keyed by the document, not by a call: once it exists, no other claim of the
-- document succeeds, and once settled it stays (with the document's TTL): a re-run never makes a
-- second job for a document already sent. Every op checks all that can fail before its first
-- write, and repeating an op whose reply was lost either applies once or answers as applied
-- ("same"): a retry with the same token is never fenced out by its own transition.
--
-- KEY: attempt, lease (the caller's), inflight, reconcile, due, campaign, tracked (bulk.py: BulkKeys)
-- ARGV[1]: {op, member ("<campaign id>/<n>"), token, worker, ...}
--   claim      due -> calling (slot held): {attempt_ttl_s}              -> "ok" | "same" | why not
--   call       claimed -> calling (a retry leaves)                      -> 1 | 0
--   uncall     calling -> claimed (the try surely did not reach OVH)    -> 1 | 0
--   release    claimed -> due again (the call never left)               -> 1 | 0
--   answer     record OVH's answer (anyone: it is evidence): {report}   -> state | ""
--   ambiguous  calling -> ambiguous: {reason, grace_ms, deadline_ms}    -> 1 | 0
--   settle     calling (owner) or ambiguous (reconciler, token "") -> sent | failed:
--              {outcome, report, reason, rows}                          -> 1 | 0
--   absent     ambiguous (reconciler) -> due again: proven not sent     -> 1 | 0
--   takeover   claimed -> due, calling -> ambiguous, for a dead owner: {dead_owner, grace_ms,
--              deadline_ms, reason}                                      -> "due" | "ambiguous" | ""
local attempt, lease, inflight, reconcile, due, campaign, tracked =
    KEY.attempt, KEY.lease, KEY.inflight, KEY.reconcile, KEY.due, KEY.campaign, KEY.tracked
local doc = cjson.decode(ARGV[1])
local now = now_ms()
local h = redis.call("hmget", attempt, "state", "owner", "report")
local state, owner = h[1], h[2]

local function fenced()
    return owner ~= doc.token or redis.call("get", lease) ~= doc.worker
end

if doc.op == "claim" then
    if state then
        if owner == doc.token and state == "calling" then return "same" end
        redis.call("zrem", due, doc.member)
        return "taken"
    end
    if redis.call("get", lease) ~= doc.worker then return "nolease" end
    local c = redis.call("hget", campaign, "state")
    if not c then
        redis.call("zrem", due, doc.member)
        return "gone"
    end
    if c ~= "running" then return c end -- paused: stays due; cancelled: cancel.lua empties due
    local score = redis.call("zscore", due, doc.member)
    if not score or tonumber(score) > now then return "notdue" end
    redis.call("hset", attempt, "state", "calling", "owner", doc.token, "worker", doc.worker,
        "claimed_at", int(now), "called_at", int(now), "tries", 1)
    redis.call("expire", attempt, doc.attempt_ttl_s)
    redis.call("zrem", due, doc.member)
    redis.call("zadd", inflight, now, doc.member)
    return "ok"
end

if doc.op == "answer" then
    if not state then return "" end
    if (state == "calling" or state == "ambiguous") and not h[3] then
        redis.call("hset", attempt, "report", doc.report)
    end
    return state
end

if doc.op == "takeover" then
    if not state or owner ~= doc.dead_owner or redis.call("exists", lease) == 1 then return "" end
    if state == "claimed" then
        redis.call("del", attempt)
        redis.call("zrem", inflight, doc.member)
        redis.call("zadd", due, now, doc.member)
        return "due"
    elseif state == "calling" then
        redis.call("hset", attempt, "state", "ambiguous", "reason", doc.reason, "ambiguous_at", int(now),
            "absent_after", int(now + doc.grace_ms), "deadline", int(now + doc.deadline_ms))
        redis.call("zrem", inflight, doc.member)
        redis.call("zadd", reconcile, now, doc.member)
        return "ambiguous"
    end
    return ""
end

if doc.op == "settle" or doc.op == "absent" then
    if doc.token ~= "" then
        if state ~= "calling" or fenced() then
            return (state == doc.outcome and owner == doc.token) and 1 or 0
        end
    elseif state ~= "ambiguous" then
        return (doc.op == "settle" and state == doc.outcome) and 1 or 0
    end
    redis.call("zrem", inflight, doc.member)
    redis.call("zrem", reconcile, doc.member)
    if doc.op == "absent" then
        redis.call("del", attempt)
        redis.call("zadd", due, now, doc.member)
        return 1
    end
    redis.call("hset", attempt, "state", doc.outcome, "settled_at", int(now), "reason", doc.reason or "")
    if doc.report and doc.report ~= "" and not h[3] then redis.call("hset", attempt, "report", doc.report) end
    redis.call("hincrby", campaign, "docs_" .. doc.outcome, 1)
    if doc.outcome == "sent" then
        redis.call("hincrby", campaign, "rows_submitted", doc.rows)
        redis.call("zadd", tracked, "NX", now, doc.campaign_id)
    end
    return 1
end

if not state or fenced() then return 0 end
if doc.op == "call" and state == "claimed" then
    redis.call("hset", attempt, "state", "calling", "called_at", int(now))
    redis.call("hincrby", attempt, "tries", 1)
    return 1
elseif doc.op == "uncall" and state == "calling" then
    redis.call("hset", attempt, "state", "claimed")
    return 1
elseif doc.op == "release" and state == "claimed" then
    redis.call("del", attempt)
    redis.call("zrem", inflight, doc.member)
    redis.call("zadd", due, doc.due_ms or now, doc.member)
    return 1
elseif doc.op == "ambiguous" and state == "calling" then
    redis.call("hset", attempt, "state", "ambiguous", "reason", doc.reason, "ambiguous_at", int(now),
        "absent_after", int(now + doc.grace_ms), "deadline", int(now + doc.deadline_ms))
    redis.call("zrem", inflight, doc.member)
    redis.call("zadd", reconcile, now, doc.member)
    return 1
end
-- a retry of a transition that applied (its reply was lost) finds the state it left
if (doc.op == "call" and state == "calling") or (doc.op == "uncall" and state == "claimed")
    or (doc.op == "ambiguous" and state == "ambiguous") then
    return 1
end
return 0
