-- release: the owner gives back an attempt whose call did not leave (stopping, no rate-limit
-- slot, a lease too short to call safely): its receivers go back to the head of their buffer.
--
-- KEY: attempt, lease (the caller's), inflight, buffer, buffer_meta, due, wake
-- ARGV[1]: {call_id, token, worker}
-- Returns the number of receivers given back, or -1 (not the owner, lease lost, or gone).
local attempt, lease, inflight = KEY.attempt, KEY.lease, KEY.inflight
local doc = cjson.decode(ARGV[1])
local a = redis.call("hmget", attempt, "state", "owner", "batch_key", "meta", "entries")
if not a[1] or a[1] == "ambiguous" or a[2] ~= doc.token or redis.call("get", lease) ~= doc.worker then
    return -1
end
redis.call("del", attempt)
redis.call("zrem", inflight, doc.call_id)
return requeue(KEY.buffer, KEY.buffer_meta, KEY.due, KEY.wake, a[3], a[4], lines(a[5]), now_ms())
