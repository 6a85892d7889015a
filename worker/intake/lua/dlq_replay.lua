-- dlq_replay: put a dead-lettered accept message back on its queue, only if nothing changed since
-- the caller looked: the dead letter is still there with the same body, and none of the requests
-- it replays has a result or a dedupe marker (accepted meanwhile). Then it cannot be sent twice.
--
-- KEY: dead_letters (the queue's .XQ set), dead_letter_messages (its .XQ.msgs hash), queue (the
--      list), queue_messages (its .msgs hash); then the keys the document refers to by index.
-- ARGV[1]: {id (the dead letter's), sha1 (of its body), message_id, body (the message to queue),
--   checks: [key indexes: seen markers and results of the requests replayed], remove (bool)}
-- Returns "replayed", "gone" (no such dead letter, or another body) or "changed".
local xq, xq_msgs, q, msgs = KEY.dead_letters, KEY.dead_letter_messages, KEY.queue, KEY.queue_messages
local doc = cjson.decode(ARGV[1])
local body = redis.call("hget", xq_msgs, doc.id)
if not body or redis.sha1hex(body) ~= doc.sha1 then return "gone" end
for _, key in ipairs(doc.checks) do
    if redis.call("exists", KEYS[key]) == 1 then return "changed" end
end
redis.call("hset", msgs, doc.message_id, doc.body)
redis.call("rpush", q, doc.message_id)
if doc.remove then
    redis.call("zrem", xq, doc.id)
    redis.call("hdel", xq_msgs, doc.id)
end
return "replayed"
