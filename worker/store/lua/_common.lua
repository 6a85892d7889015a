-- Shared by the worker's scripts (worker/store/scripts.py prepends this file when it loads
-- them, since Redis scripts cannot call one another). Keys always come from KEYS.
if redis.replicate_commands then
    redis.replicate_commands() -- Redis < 7 needs it to write after TIME; a no-op since 7.0
end

-- The Redis server's clock in ms: every replica agrees on it, whatever its own clock says.
local function now_ms()
    local t = redis.call("time")
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as text without exponent (Lua would print 1.7e+12).
local function int(x)
    return string.format("%.0f", x)
end

-- Most values passed to one Redis command from a Lua table (unpack has a stack limit of a few
-- thousand): longer lists are written in steps of this many.
local STEP = 1000

-- Drop the `n` oldest ids of list `q` (and their bodies in hash `msgs`), in bounded steps;
-- returns how many were dropped.
local function drop_oldest(q, msgs, n)
    local dropped = 0
    while n > 0 do
        local oldest = redis.call("lpop", q, math.min(n, STEP))
        if not oldest then break end
        if msgs then redis.call("hdel", msgs, unpack(oldest)) end
        dropped = dropped + #oldest
        n = n - #oldest
    end
    return dropped
end

-- Put a message on a dramatiq queue the way dramatiq's own enqueue does (body in the .msgs
-- hash, id pushed on the list), in the envelope dramatiq decodes. A queue longer than `cap`
-- (> 0) drops its oldest messages, counted in the stats hash under "dropped:<queue>": a results
-- queue nobody consumes cannot fill Redis. Cannot fail however far over its cap the queue is
-- (a cap lowered, a queue shared with other producers): scripts call it after other writes.
local function enqueue(q, msgs, queue_name, actor, message_id, payload, timestamp_ms, cap, stats)
    redis.call("hset", msgs, message_id, '{"queue_name":' .. cjson.encode(queue_name)
        .. ',"actor_name":"' .. actor .. '","args":[' .. payload .. '],"kwargs":{},"options":{"redis_message_id":"'
        .. message_id .. '"},"message_id":"' .. message_id .. '","message_timestamp":' .. int(timestamp_ms) .. '}')
    local length = redis.call("rpush", q, message_id)
    if cap and cap > 0 and length > cap then
        redis.call("hincrby", stats, "dropped:" .. queue_name, drop_oldest(q, msgs, length - cap))
    end
end

-- Mark an OVH SMS (its keys.sms hash) as the proof of one call: the first call to claim it keeps
-- it, so an SMS is never proof for two attempts; kept at least ttl_s seconds.
local function own_sms(key, call_id, ttl_s)
    redis.call("hsetnx", key, "call_id", call_id)
    if redis.call("ttl", key) < ttl_s then redis.call("expire", key, ttl_s) end
end

-- Keep a request's result readable by SmsProducer.wait, and wake whoever waits for it.
local function keep_result(result_key, ready_key, result, ttl)
    redis.call("set", result_key, result, "EX", ttl)
    redis.call("lpush", ready_key, 1)
    redis.call("expire", ready_key, ttl)
end

-- Wake the dispatchers of a lane (the list only needs to be non-empty: keep it short).
local function wake(wake_key)
    redis.call("lpush", wake_key, 1)
    redis.call("ltrim", wake_key, 0, 15)
end

-- Give entries back to the head of their buffer, in their order, due at once.
local function requeue(buf, bufmeta, due, wake_key, batch_key, meta, entries, now)
    if #entries == 0 then return 0 end
    redis.call("set", bufmeta, meta, "NX")
    for n = #entries, 1, -1 do
        redis.call("lpush", buf, entries[n])
    end
    redis.call("zadd", due, "LT", now, batch_key)
    wake(wake_key)
    return #entries
end

-- Split "a\nb\nc" into {"a", "b", "c"}.
local function lines(text)
    local out = {}
    for line in string.gmatch(text or "", "[^\n]+") do
        table.insert(out, line)
    end
    return out
end
