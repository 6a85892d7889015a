-- release: the owner gives back an attempt whose call did not leave (stopping, no rate-limit
-- slot, a lease too short to call safely): its receivers go back to the head of their buffer.
--
-- KEYS: attempt, lease (the caller's), in-flight set, buffer, buffer meta, due set, wake list
-- ARGV[1]: {call_id, token, worker}
-- Returns the number of receivers given back, or -1 (not the owner, lease lost, or gone).
local attempt, lease, inflight = KEYS[1], KEYS[2], KEYS[3]
local doc = cjson.decode(ARGV[1])
local a = redis.call("hmget", attempt, "state", "owner", "batch_key", "meta", "entries")
if not a[1] or a[1] == "ambiguous" or a[2] ~= doc.token or redis.call("get", lease) ~= doc.worker then
    return -1
end
redis.call("del", attempt)
redis.call("zrem", inflight, doc.call_id)
return requeue(KEYS[4], KEYS[5], KEYS[6], KEYS[7], a[3], a[4], lines(a[5]), now_ms())
