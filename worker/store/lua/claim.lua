-- claim: take up to max receivers from the most overdue buffer of the highest lane that has
-- one due, and record the attempt before any call is made (so a crash is recoverable).
--
-- ARGV: prefix, now_ms, max_receivers_per_call, call_id, worker_id, n_lanes,
--       then per lane (highest priority first): lane, linger_ms
-- Returns {call_id, lane, meta_json, reply_tos_json, entries...} or, when nothing is due,
-- {"", next_due_ms or -1}.
local prefix, now, max_per_call, call_id, worker_id = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local n_lanes = tonumber(ARGV[6])
local next_due = -1
for l = 0, n_lanes - 1 do
    local lane, linger = ARGV[7 + 2 * l], tonumber(ARGV[8 + 2 * l])
    local due = prefix .. "due:" .. lane
    while true do
        local top = redis.call("zrangebyscore", due, "-inf", now, "LIMIT", 0, 1)
        local batch_key = top[1]
        if not batch_key then break end
        local buffer = prefix .. "buf:" .. batch_key
        local entries = redis.call("lpop", buffer, max_per_call)
        local meta = redis.call("get", prefix .. "bufmeta:" .. batch_key)
        local left = redis.call("llen", buffer)
        if left == 0 then
            redis.call("zrem", due, batch_key)
            redis.call("del", prefix .. "bufmeta:" .. batch_key)
        elseif left < max_per_call then
            -- the rest waits for its own oldest entry's linger
            local oldest = redis.call("lindex", buffer, 0)
            local arrival = tonumber(string.match(oldest, "^(%d+)|"))
            redis.call("zadd", due, arrival + linger, batch_key)
        end
        if entries and meta then
            local reply_tos = {}
            for _, entry in ipairs(entries) do
                local request_id = string.match(entry, "^%d+|([^|]+)|")
                if reply_tos[request_id] == nil then
                    reply_tos[request_id] = redis.call("hget", prefix .. "req:" .. request_id, "reply_to") or ""
                end
            end
            redis.call("hset", prefix .. "attempt:" .. call_id, "meta", meta, "lane", lane,
                "batch_key", batch_key, "entries", table.concat(entries, "\n"), "started", now,
                "worker", worker_id, "called", 0)
            redis.call("zadd", prefix .. "attempts", now, call_id)
            return {call_id, lane, meta, cjson.encode(reply_tos), unpack(entries)}
        end
    end
    local first = redis.call("zrange", due, 0, 0, "WITHSCORES")
    if first[2] and (next_due < 0 or tonumber(first[2]) < next_due) then
        next_due = tonumber(first[2])
    end
end
return {"", next_due}
