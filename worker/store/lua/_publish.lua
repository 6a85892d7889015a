-- Shared by the scripts that publish results (stage, settle, reject): worker/batch_buffer.py
-- prepends this file when it loads them, since Redis 6.2 scripts cannot call one another.

-- Put a message on a dramatiq queue the way dramatiq's own enqueue does (body in
-- <queue>.msgs, id pushed on the list), in the envelope dramatiq decodes.
local function enqueue(namespace, queue, actor, message_id, payload, timestamp_ms)
    redis.call("hset", namespace .. ":" .. queue .. ".msgs", message_id, '{"queue_name":' .. cjson.encode(queue)
        .. ',"actor_name":"' .. actor .. '","args":[' .. payload .. '],"kwargs":{},"options":{"redis_message_id":"'
        .. message_id .. '"},"message_id":"' .. message_id .. '","message_timestamp":' .. timestamp_ms .. '}')
    redis.call("rpush", namespace .. ":" .. queue, message_id)
end

-- Keep a request's result readable by SmsProducer.wait, and wake whoever waits for it.
local function keep_result(prefix, request_id, result, ttl)
    redis.call("set", prefix .. "result:" .. request_id, result, "EX", ttl)
    redis.call("lpush", prefix .. "result:" .. request_id .. ":ready", 1)
    redis.call("expire", prefix .. "result:" .. request_id .. ":ready", ttl)
end

