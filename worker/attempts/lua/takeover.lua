-- takeover: an attempt whose owner's lease expired, or that made no progress past its stale
-- time (the owner lives but lost track of it: a reply it never got, a thread that died), is
-- taken over by any live worker: a claimed one (its call did not leave) is staged again; a
-- calling one (the call may have left) goes to the reconcilers, its receivers absent only after
-- the try's own deadline (called_at + try_ms) plus the grace. Checked in the same step as the
-- lease and the stale time, so a worker that is only slow is never overtaken.
--
-- KEY: attempt, owner_lease, inflight, reconcile, reconcile_wake, and the attempt's batch key's
--      buffer, buffer_meta, due (its lane's) and wake
-- ARGV[1]: {call_id, owner, batch_key, grace_ms, deadline_ms, reason, tombstone_ttl_s}
-- Returns "requeued", "ambiguous" or "" (nothing to do).
local attempt, owner_lease, inflight, reconcile = KEY.attempt, KEY.owner_lease, KEY.inflight, KEY.reconcile
local doc = cjson.decode(ARGV[1])
local a = redis.call("hmget", attempt, "state", "owner", "batch_key", "meta", "entries", "stale_at", "called_at",
    "try_ms")
if not a[1] or a[2] ~= doc.owner or a[3] ~= doc.batch_key then
    return ""
end
local now = now_ms()
local stale_at = tonumber(a[6] or "")  -- absent on an attempt claimed by an older version: lease only
if redis.call("exists", owner_lease) == 1 and (not stale_at or now < stale_at) then
    return ""
end
if a[1] == "claimed" then
    local entries = lines(a[5])
    redis.call("del", attempt)
    redis.call("hset", attempt, "state", "taken", "by", "takeover")
    redis.call("expire", attempt, doc.tombstone_ttl_s)
    redis.call("zrem", inflight, doc.call_id)
    requeue(KEY.buffer, KEY.buffer_meta, KEY.due, KEY.wake, a[3], a[4], entries, now)
    return "requeued"
elseif a[1] == "calling" then
    local absent_after = math.max(tonumber(a[7]) + tonumber(a[8] or "0"), now) + doc.grace_ms
    redis.call("hset", attempt, "state", "ambiguous", "owner", "", "reason", doc.reason, "ambiguous_at", int(now),
        "absent_after", int(absent_after), "deadline", int(now + doc.deadline_ms))
    redis.call("zrem", inflight, doc.call_id)
    redis.call("zadd", reconcile, now, doc.call_id)
    wake(KEY.reconcile_wake)
    return "ambiguous"
end
return ""
