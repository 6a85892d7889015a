-- reject: publish the one result of a request refused before staging (bad input, quota), unless
-- the request id was already seen: a redelivered bad message publishes nothing twice.
--
-- KEY: seen (marker), result, ready (result ready list), queue (results queue list), messages
--      (its .msgs hash), stats (hash); then the campaign statistics hash when the request is tagged
-- ARGV[1]: {id, dedupe_ttl_s, result (JSON), result_ttl_s, queue (name), message_id, actor, queue_cap,
--           campaign: {key (index), service, tag, ttl_s} | absent}
-- Returns 1 when published, 0 for a repeat.
local doc = cjson.decode(ARGV[1])
local now = now_ms()
if not redis.call("set", KEY.seen, int(now), "NX", "EX", doc.dedupe_ttl_s) then
    return 0
end
keep_result(KEY.result, KEY.ready, doc.result, doc.result_ttl_s)
enqueue(KEY.queue, KEY.messages, doc.queue, doc.actor, doc.message_id .. ":" .. int(now), doc.result, now, doc.queue_cap,
    KEY.stats)
if doc.campaign then campaign_settled(KEYS[doc.campaign.key], doc.campaign, { "rejected" }, now) end
return 1
