-- claim: take up to `max` receivers from one due buffer for a jobs call about to leave (the
-- dispatcher holds its rate-limit slot already), and record the attempt as "claimed", owned by
-- the caller's lease: from here on a crash is found by the lease sweep. A receiver goes at most
-- once into a call: an entry whose receiver is already in it (another request, same text, same
-- number) stays at the head of the buffer, due at once, for the next call.
--
-- The call id is the claim's token: the same claim sent again (its reply was lost) finds the
-- attempt it made and answers it again, so the owner resumes it ("already applied by you").
--
-- KEY: lease (the caller's), due (the lane's due set), buffer, buffer_meta, inflight, attempt
-- ARGV[1]: {call_id, batch_key, lane, linger_ms, max, worker, token, attempt_ttl_s, stale_ms}
--   stale_ms: how long the owner may take before its next step (the sweep takes the attempt
--   over past it, even while the owner's lease lives)
-- Returns {"ok", meta, entries...}, {"nolease"}, {"empty"} (nothing due there any more), or
-- {"gone"} (this call id exists and is no claim of this caller's any more: taken over, settled).
local lease, due, buf, bufmeta, inflight, attempt = KEY.lease, KEY.due, KEY.buffer, KEY.buffer_meta, KEY.inflight,
    KEY.attempt
local doc = cjson.decode(ARGV[1])
if redis.call("get", lease) ~= doc.worker then
    return {"nolease"}
end
local now = now_ms()
local a = redis.call("hmget", attempt, "state", "owner", "meta", "entries")
if a[1] then
    if a[1] == "claimed" and a[2] == doc.token then
        redis.call("hset", attempt, "stale_at", int(now + doc.stale_ms))
        return {"ok", a[3], unpack(lines(a[4]))}
    end
    return {"gone"}
end
local score = redis.call("zscore", due, doc.batch_key)
if not score or tonumber(score) > now then
    return {"empty"}
end
local meta = redis.call("get", bufmeta)
local popped = meta and redis.call("lpop", buf, doc.max)
if not popped then
    -- nothing to send from here (an empty buffer, or entries without their call's meta, which no
    -- step writes): stop pointing dispatchers at it, or they would come back to it forever
    if redis.call("llen", buf) == 0 then redis.call("del", bufmeta) end
    redis.call("zrem", due, doc.batch_key)
    return {"empty"}
end
-- One entry per receiver: "<arrival>|<request>|<receiver>|<credits>|<reply_to>".
local taken, again, seen = {}, {}, {}
for _, entry in ipairs(popped) do
    local receiver = string.match(entry, "^[^|]*|[^|]*|([^|]*)|")
    if seen[receiver] then
        table.insert(again, entry)
    else
        seen[receiver] = true
        table.insert(taken, entry)
    end
end
for n = #again, 1, -1 do
    redis.call("lpush", buf, again[n])
end
local left = redis.call("llen", buf)
if left == 0 then
    redis.call("zrem", due, doc.batch_key)
    redis.call("del", bufmeta)
elseif #again > 0 then
    redis.call("zadd", due, now, doc.batch_key)  -- the same number again: in the next call, at once
elseif left < doc.max then
    -- the rest waits for its own oldest entry's linger
    local oldest = redis.call("lindex", buf, 0)
    redis.call("zadd", due, tonumber(string.match(oldest, "^(%d+)|")) + doc.linger_ms, doc.batch_key)
end
redis.call("hset", attempt, "state", "claimed", "owner", doc.token, "worker", doc.worker, "lane", doc.lane,
    "batch_key", doc.batch_key, "meta", meta, "entries", table.concat(taken, "\n"), "claimed_at", int(now),
    "tries", 0, "stale_at", int(now + doc.stale_ms))
redis.call("expire", attempt, doc.attempt_ttl_s)
redis.call("zadd", inflight, now, doc.call_id)
return {"ok", meta, unpack(taken)}
