-- requeue: give back the receivers of an attempt whose call never left (the worker stopped
-- between claim and call), at the head of their buffer, due at once.
--
-- ARGV: prefix, call_id, now_ms
-- Returns the number of receivers given back, or -1 if the attempt is gone or was called.
local prefix, call_id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local attempt = prefix .. "attempt:" .. call_id
local a = redis.call("hmget", attempt, "meta", "lane", "batch_key", "entries", "called")
if not a[1] or a[5] ~= "0" then
    return -1
end
local entries = {}
for entry in string.gmatch(a[4], "[^\n]+") do
    table.insert(entries, 1, entry)
end
redis.call("set", prefix .. "bufmeta:" .. a[3], a[1], "NX")
redis.call("lpush", prefix .. "buf:" .. a[3], unpack(entries))
redis.call("zadd", prefix .. "due:" .. a[2], "LT", now, a[3])
redis.call("del", attempt)
redis.call("zrem", prefix .. "attempts", call_id)
redis.call("lpush", prefix .. "wake", 1)
return #entries
