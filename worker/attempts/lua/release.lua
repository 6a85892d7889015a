-- release: the owner gives back an attempt whose call did not leave (stopping, no rate-limit
-- slot, a lease too short to call safely): its receivers go back to the head of their buffer.
-- The attempt is replaced by a tombstone (state "released", by the caller's token) kept
-- tombstone_ttl_s, so the same release sent again after its reply was lost answers again.
--
-- KEY: attempt, lease (the caller's), inflight, buffer, buffer_meta, due, wake
-- ARGV[1]: {call_id, token, worker, tombstone_ttl_s}
-- Returns the number of receivers given back, or -1 (not the owner, lease lost, or gone).
local attempt, lease, inflight = KEY.attempt, KEY.lease, KEY.inflight
local doc = cjson.decode(ARGV[1])
local a = redis.call("hmget", attempt, "state", "owner", "batch_key", "meta", "entries", "by", "released")
if a[1] == "released" and a[6] == doc.token then
    return tonumber(a[7])
end
if (a[1] ~= "claimed" and a[1] ~= "calling") or a[2] ~= doc.token or redis.call("get", lease) ~= doc.worker then
    return -1
end
local entries = lines(a[5])
redis.call("del", attempt)
redis.call("hset", attempt, "state", "released", "by", doc.token, "released", #entries)
redis.call("expire", attempt, doc.tombstone_ttl_s)
redis.call("zrem", inflight, doc.call_id)
return requeue(KEY.buffer, KEY.buffer_meta, KEY.due, KEY.wake, a[3], a[4], entries, now_ms())
