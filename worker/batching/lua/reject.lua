-- reject: publish the one result of a request refused before staging (bad input, quota), unless
-- the request id was already seen: a redelivered bad message publishes nothing twice. A refusal
-- that is not the request's own fault (`transient`: its quota, the account, a rate not known
-- yet, a fault of ours) marks the id with the queue message's delivery ("t:<delivery>"), so the
-- same message redelivered publishes nothing and a new message with that id is taken as a resend
-- (stage.lua). A final one marks it "r:<token>": the same step sent again answers 1 again.
--
-- KEY: seen (marker), result, ready (result ready list), queue (results queue list), messages
--      (its .msgs hash), stats (hash); then the campaign statistics hash when the request is tagged
-- ARGV[1]: {id, token, delivery, transient, dedupe_ttl_s, result (JSON), result_ttl_s, queue (name),
--           message_id, actor, queue_cap, campaign: {key (index), service, tag, ttl_s} | absent}
-- Returns 1 when published (now, or by this same step before), 0 for a repeat.
local doc = cjson.decode(ARGV[1])
local marker = redis.call("get", KEY.seen)
if marker == "r:" .. doc.token then
    return 1
end
if marker and not (string.sub(marker, 1, 2) == "t:" and marker ~= "t:" .. doc.delivery) then
    return 0
end
local now = now_ms()
redis.call("set", KEY.seen, doc.transient and ("t:" .. doc.delivery) or ("r:" .. doc.token), "EX", doc.dedupe_ttl_s)
keep_result(KEY.result, KEY.ready, doc.result, doc.result_ttl_s)
enqueue(KEY.queue, KEY.messages, doc.queue, doc.actor, doc.message_id .. ":" .. int(now), doc.result, now, doc.queue_cap,
    KEY.stats)
if doc.campaign then campaign_settled(KEYS[doc.campaign.key], doc.campaign, { "rejected" }, now) end
return 1
