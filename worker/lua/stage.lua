-- stage: dedupe a request and stage its receivers into batch buffers, in one atomic step,
-- so a redelivered message changes nothing.
--
-- KEYS[1]  seen marker of the request        KEYS[2]  request hash
-- ARGV: prefix, request_id, now_ms, dedupe_ttl_s, skeleton_json, reply_to, n_valid,
--       invalid_fragments (JSON objects joined by ","; "" for none), n_invalid,
--       max_receivers_per_call, n_batches,
--       then per batch: batch_key, lane, linger_ms, meta_json, n_entries, entries...
-- Entries are "<arrival ms>|<request id>|<receiver E.164>|<credits estimate>".
-- Returns {1, woke} when staged (woke = 1 if a buffer became due or new), {0, 0} for a repeat.
local prefix, request_id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not redis.call("set", KEYS[1], now, "NX", "EX", tonumber(ARGV[4])) then
    return {0, 0}
end
redis.call("hset", KEYS[2], "skeleton", ARGV[5], "reply_to", ARGV[6], "remaining", ARGV[7],
    "sent", 0, "failed", 0, "unknown", 0, "invalid", ARGV[9], "credits", 0)
if ARGV[8] ~= "" then
    redis.call("rpush", prefix .. "outcomes:" .. request_id, ARGV[8])
end
local max_per_call = tonumber(ARGV[10])
local woke = 0
local i = 12
for _ = 1, tonumber(ARGV[11]) do
    local batch_key, lane, linger, meta, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], tonumber(ARGV[i + 4])
    local buffer = prefix .. "buf:" .. batch_key
    redis.call("set", prefix .. "bufmeta:" .. batch_key, meta, "NX")
    local length = redis.call("rpush", buffer, unpack(ARGV, i + 5, i + 4 + n))
    local due = prefix .. "due:" .. lane
    if linger == 0 or length >= max_per_call then
        redis.call("zadd", due, "LT", now, batch_key)
        woke = 1
    else
        -- a new buffer: wake a dispatcher so it sleeps until this one is due
        woke = math.max(woke, redis.call("zadd", due, "NX", now + linger, batch_key))
    end
    i = i + 5 + n
end
if woke == 1 then
    redis.call("lpush", prefix .. "wake", 1)
    redis.call("ltrim", prefix .. "wake", 0, 63)
end
return {1, woke}
