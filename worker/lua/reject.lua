-- reject: publish the one result of a request refused before staging (bad input), unless
-- the request id was already seen: a redelivered bad message publishes nothing twice.
--
-- KEYS[1]  seen marker of the request
-- ARGV: prefix, request_id, now_ms, dedupe_ttl_s, result_json, result_ttl_s, namespace,
--       queue, message_id, envelope_json
-- Returns 1 when published, 0 for a repeat.
local prefix, request_id, ttl = ARGV[1], ARGV[2], tonumber(ARGV[6])
if not redis.call("set", KEYS[1], ARGV[3], "NX", "EX", tonumber(ARGV[4])) then
    return 0
end
redis.call("set", prefix .. "result:" .. request_id, ARGV[5], "EX", ttl)
redis.call("lpush", prefix .. "result:" .. request_id .. ":ready", 1)
redis.call("expire", prefix .. "result:" .. request_id .. ":ready", ttl)
redis.call("hset", ARGV[7] .. ":" .. ARGV[8] .. ".msgs", ARGV[9], ARGV[10])
redis.call("rpush", ARGV[7] .. ":" .. ARGV[8], ARGV[9])
return 1
