-- reject: publish the one result of a request refused before staging (bad input), unless
-- the request id was already seen: a redelivered bad message publishes nothing twice.
-- (enqueue and keep_result come from _publish.lua, prepended when the script is loaded.)
--
-- KEYS[1]  seen marker of the request
-- ARGV: prefix, request_id, now_ms, dedupe_ttl_s, result_json, result_ttl_s, namespace,
--       queue, message_id, result_actor
-- Returns 1 when published, 0 for a repeat.
local prefix, request_id = ARGV[1], ARGV[2]
if not redis.call("set", KEYS[1], ARGV[3], "NX", "EX", tonumber(ARGV[4])) then
    return 0
end
keep_result(prefix, request_id, ARGV[5], tonumber(ARGV[6]))
enqueue(ARGV[7], ARGV[8], ARGV[10], ARGV[9], ARGV[5], ARGV[3])
return 1
