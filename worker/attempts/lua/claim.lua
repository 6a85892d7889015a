-- claim: take up to `max` receivers from one due buffer for a jobs call about to leave (the
-- dispatcher holds its rate-limit slot already), and record the attempt as "calling", owned by
-- the caller's lease, before the call is made: a crash from here on is found by the lease sweep.
--
-- KEY: lease (the caller's), due (the lane's due set), buffer, buffer_meta, inflight, attempt
-- ARGV[1]: {call_id, batch_key, lane, linger_ms, max, worker, token, attempt_ttl_s}
-- Returns {"ok", meta, entries...}, {"nolease"}, or {"empty"} (nothing due there any more).
local lease, due, buf, bufmeta, inflight, attempt = KEY.lease, KEY.due, KEY.buffer, KEY.buffer_meta, KEY.inflight,
    KEY.attempt
local doc = cjson.decode(ARGV[1])
if redis.call("get", lease) ~= doc.worker then
    return {"nolease"}
end
local now = now_ms()
local score = redis.call("zscore", due, doc.batch_key)
if not score or tonumber(score) > now then
    return {"empty"}
end
local entries = redis.call("lpop", buf, doc.max)
local meta = redis.call("get", bufmeta)
local left = redis.call("llen", buf)
if left == 0 then
    redis.call("zrem", due, doc.batch_key)
    redis.call("del", bufmeta)
elseif left < doc.max then
    -- the rest waits for its own oldest entry's linger
    local oldest = redis.call("lindex", buf, 0)
    redis.call("zadd", due, tonumber(string.match(oldest, "^(%d+)|")) + doc.linger_ms, doc.batch_key)
end
if not entries or not meta then
    return {"empty"}
end
redis.call("hset", attempt, "state", "calling", "owner", doc.token, "worker", doc.worker, "lane", doc.lane,
    "batch_key", doc.batch_key, "meta", meta, "entries", table.concat(entries, "\n"), "claimed_at", int(now),
    "called_at", int(now), "tries", 1)
redis.call("expire", attempt, doc.attempt_ttl_s)
redis.call("zadd", inflight, now, doc.call_id)
return {"ok", meta, unpack(entries)}
