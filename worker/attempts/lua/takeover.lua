-- takeover: an attempt whose owner's lease expired is taken over by any live worker: a claimed
-- one (its call did not leave) is staged again; a calling one (the call may have left) goes to
-- the reconcilers. Checked against the owner's lease in the same step, so a worker that is only
-- slow is never overtaken.
--
-- KEY: attempt, owner_lease, inflight, reconcile, reconcile_wake, and the attempt's batch key's
--      buffer, buffer_meta, due (its lane's) and wake
-- ARGV[1]: {call_id, owner, batch_key, grace_ms, deadline_ms, reason}
-- Returns "requeued", "ambiguous" or "" (nothing to do).
local attempt, owner_lease, inflight, reconcile = KEY.attempt, KEY.owner_lease, KEY.inflight, KEY.reconcile
local doc = cjson.decode(ARGV[1])
local a = redis.call("hmget", attempt, "state", "owner", "batch_key", "meta", "entries")
if not a[1] or a[2] ~= doc.owner or a[3] ~= doc.batch_key or redis.call("exists", owner_lease) == 1 then
    return ""
end
local now = now_ms()
if a[1] == "claimed" then
    redis.call("del", attempt)
    redis.call("zrem", inflight, doc.call_id)
    requeue(KEY.buffer, KEY.buffer_meta, KEY.due, KEY.wake, a[3], a[4], lines(a[5]), now)
    return "requeued"
elseif a[1] == "calling" then
    redis.call("hset", attempt, "state", "ambiguous", "owner", "", "reason", doc.reason, "ambiguous_at", int(now),
        "absent_after", int(now + doc.grace_ms), "deadline", int(now + doc.deadline_ms))
    redis.call("zrem", inflight, doc.call_id)
    redis.call("zadd", reconcile, now, doc.call_id)
    wake(KEY.reconcile_wake)
    return "ambiguous"
end
return ""
