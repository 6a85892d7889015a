-- poison: dead-letter a fetched queue message whose body cannot be decoded (not a dramatiq
-- envelope), so it never stops a consumer. Its id is not readable from the body: it is found
-- among the ids this broker fetched from the queue and has not acked (a prefetch's worth).
--
-- KEY: acks (this broker's ack set for the queue), messages (the queue's .msgs hash),
--      dead_letters (its .XQ set), dead_letter_messages (its .XQ.msgs hash)
-- ARGV[1]: {sha1: the SHA-1 (hex) of the raw body as fetched (the body itself may not be text)}
-- Returns the ids dead-lettered.
local acks, msgs, xq, xq_msgs = KEY.acks, KEY.messages, KEY.dead_letters, KEY.dead_letter_messages
local doc = cjson.decode(ARGV[1])
local now = now_ms()
local moved = {}
for _, id in ipairs(redis.call("smembers", acks)) do
    local body = redis.call("hget", msgs, id)
    if not body or redis.sha1hex(body) == doc.sha1 then
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
