-- poison: dead-letter a fetched queue message whose body cannot be decoded (not a dramatiq
-- envelope), so it never stops a consumer. Its id is not readable from the body: it is found
-- among the ids this broker fetched from the queue and has not acked (a prefetch's worth).
--
-- KEYS: this broker's acks set for the queue, the queue's .msgs hash, its .XQ set, .XQ.msgs hash
-- ARGV[1]: the raw body (bytes as fetched; not JSON: it may not even be text)
-- Returns the ids dead-lettered.
local acks, msgs, xq, xq_msgs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local raw = ARGV[1]
local now = now_ms()
local moved = {}
for _, id in ipairs(redis.call("smembers", acks)) do
    local body = redis.call("hget", msgs, id)
    if body == raw or not body then
        redis.call("srem", acks, id)
        if body then
            redis.call("zadd", xq, now, id)
            redis.call("hset", xq_msgs, id, body)
            redis.call("hdel", msgs, id)
            table.insert(moved, id)
        end
    end
end
return moved
