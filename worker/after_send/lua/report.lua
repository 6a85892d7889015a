-- report: publish one delivery report, once per (SMS, status); a final status closes the SMS, so
-- a later report of it (a repeat, a late pending, another final) publishes nothing. Callbacks are
-- at-least-once and unordered: this check and the publication are one atomic step.
-- (enqueue comes from _common.lua, prepended when the script is loaded.)
--
-- KEY.sms        the SMS's tracking hash (keys.sms), written at settlement
-- KEY.last_sent  the receiver's last-sent hash (keys.last_sent): ties later replies to this request
-- KEY.queue, KEY.messages  the results queue (the request's reply_to) and its .msgs hash
-- KEY.stats      the stats hash (events a capped results queue dropped)
-- ARGV[1]  JSON {status, final, payload (the DeliveryReport JSON), ovh_id (string), queue,
--          queue_cap, actor, message_id, timestamp_ms, reply_window_s, count_poll,
--          campaign: {key (index of the tag's campaign statistics, keys.campaign_stats), ttl_s,
--          ptt, delivered_at} | absent}
-- Returns {code, polls}: code 1 published; 0 the SMS is not recorded (unknown id, or expired);
-- -1 this status of this SMS was published already; -2 another final status was published
-- first. polls: receipt polls of the SMS so far, counted here when count_poll (pull mode).
local doc = cjson.decode(ARGV[1])
if redis.call("exists", KEY.sms) == 0 then
    return {0, 0}
end
local polls = 0
if doc.count_poll then
    polls = redis.call("hincrby", KEY.sms, "polls", 1)
end
local final = redis.call("hget", KEY.sms, "final")
if final then
    if final == doc.status then return {-1, polls} end
    return {-2, polls}
end
if redis.call("hsetnx", KEY.sms, "r:" .. doc.status, 1) == 0 then
    return {-1, polls}
end
if doc.final then
    redis.call("hset", KEY.sms, "final", doc.status)
end
local names = {"reply_to", "request_id", "tag", "service", "login", "sent_at"}
local h = redis.call("hmget", KEY.sms, unpack(names))
enqueue(KEY.queue, KEY.messages, doc.queue, doc.actor, doc.message_id, doc.payload, doc.timestamp_ms, doc.queue_cap,
    KEY.stats)
if doc.campaign then
    local c = doc.campaign
    campaign_delivered(KEYS[c.key], KEY.sms, {status = doc.status, ptt = c.ptt, delivered_at = c.delivered_at, ttl_s = c.ttl_s})
end

-- The receiver's last SMS, never replaced by a late report of an older one.
local sent_at = tonumber(h[6] or "0") or 0
local last_at = tonumber(redis.call("hget", KEY.last_sent, "sent_at") or "0") or 0
if sent_at >= last_at then
    local fields = {"ovh_id", doc.ovh_id}
    for n, name in ipairs(names) do
        if h[n] then
            table.insert(fields, name)
            table.insert(fields, h[n])
        end
    end
    redis.call("del", KEY.last_sent)
    redis.call("hset", KEY.last_sent, unpack(fields))
    redis.call("expire", KEY.last_sent, doc.reply_window_s)
end
return {1, polls}
