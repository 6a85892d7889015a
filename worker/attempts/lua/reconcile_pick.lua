-- reconcile_pick: hand the next ambiguous attempt due for a look to one reconciler, hiding it
-- from the others for a while (if that reconciler stops, the attempt comes back when it ends).
--
-- KEY: reconcile
-- ARGV[1]: {visibility_ms}
-- Returns {call_id} or, when none is due, {"", next due ms or -1}.
local doc = cjson.decode(ARGV[1])
local now = now_ms()
local due = redis.call("zrangebyscore", KEY.reconcile, "-inf", now, "LIMIT", 0, 1)
if due[1] then
    redis.call("zadd", KEY.reconcile, now + doc.visibility_ms, due[1])
    return {due[1]}
end
local first = redis.call("zrange", KEY.reconcile, 0, 0, "WITHSCORES")
return {"", first[2] or "-1"}
