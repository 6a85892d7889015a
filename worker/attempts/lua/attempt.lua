-- attempt: the fenced transitions of one jobs call's attempt (worker/attempts/lifecycle.py).
-- A transition by the owner needs the owner's lease to be alive and to still be the attempt's
-- owner: a worker that lost its lease can neither call nor settle (fencing).
--
-- KEY: attempt, lease (the caller's), inflight, reconcile, reconcile_wake
-- ARGV[1]: {op, call_id, token, worker, report, reason, grace_ms, deadline_ms}
--   call       claimed -> calling (before a retry leaves)              -> "applied" or "refused"
--   uncall     calling -> claimed (the try surely did not reach OVH)   -> "applied" or "refused"
--   answer     record OVH's answer on a calling or ambiguous attempt, whoever asks: it is
--              evidence, not a transition (a fenced-out owner still hands it over) -> state or ""
--   ambiguous  calling -> ambiguous (may have been carried out): to the reconcilers -> "applied" or "refused"
local attempt, lease, inflight, reconcile, reconcile_wake = KEY.attempt, KEY.lease, KEY.inflight, KEY.reconcile,
    KEY.reconcile_wake
local doc = cjson.decode(ARGV[1])
local h = redis.call("hmget", attempt, "state", "owner", "report")
local state, owner = h[1], h[2]
if not state then
    return doc.op == "answer" and "" or "refused"
end

if doc.op == "answer" then
    if (state == "calling" or state == "ambiguous") and not h[3] then
        redis.call("hset", attempt, "report", doc.report)
    end
    return state
end

if owner ~= doc.token or redis.call("get", lease) ~= doc.worker then
    return "refused"
end
local now = now_ms()
if doc.op == "call" and state == "claimed" then
    redis.call("hset", attempt, "state", "calling", "called_at", int(now))
    redis.call("hincrby", attempt, "tries", 1)
    return "applied"
elseif doc.op == "uncall" and state == "calling" then
    redis.call("hset", attempt, "state", "claimed")
    return "applied"
elseif doc.op == "ambiguous" and state == "calling" then
    redis.call("hset", attempt, "state", "ambiguous", "reason", doc.reason, "ambiguous_at", int(now),
        "absent_after", int(now + doc.grace_ms), "deadline", int(now + doc.deadline_ms))
    redis.call("zrem", inflight, doc.call_id)
    redis.call("zadd", reconcile, now, doc.call_id)
    wake(reconcile_wake)
    return "applied"
end
return "refused"
