-- reply: publish an incoming SMS once per (account, incoming id), and an opt-out once per
-- (account, number) while it is remembered; an opt-out also makes the accept stage refuse
-- commercial sends to that number from now on (it is added to the account's opt-outs and the
-- blacklist generation moves). A STOP reply and OVH's stopCallBack for it publish one OptOut.
-- (enqueue comes from _common.lua, prepended when the script is loaded.)
--
-- KEY.optouts        the account's opt-outs (keys.optouts)
-- KEY.blacklist_gen  the account's blacklist generation (keys.blacklist_gen)
-- KEY.queue, KEY.messages  the results queue both events go to and its .msgs hash
-- KEY.stats          the stats hash (events a capped results queue dropped)
-- ARGV[1]  JSON {incoming: {marker (index of the incoming SMS's dedupe marker, keys.incoming),
--                  queue, message_id, payload} or absent,
--                optout: {number, queue, message_id, payload} or absent,
--                queue_cap, actor, timestamp_ms, now_ms, dedupe_ttl_s, keep_ms,
--                campaign (index of the tag's campaign statistics) and campaign_ttl_s | absent}
-- Returns {incoming published (1/0), opt-out published (1/0)}; {0, 0} for a repeated reply.
local doc = cjson.decode(ARGV[1])
local published_incoming, published_optout = 0, 0
if doc.incoming then
    if not redis.call("set", KEYS[doc.incoming.marker], 1, "NX", "EX", doc.dedupe_ttl_s) then
        return {0, 0}
    end
    enqueue(KEY.queue, KEY.messages, doc.incoming.queue, doc.actor, doc.incoming.message_id, doc.incoming.payload,
        doc.timestamp_ms, doc.queue_cap, KEY.stats)
    published_incoming = 1
end
if doc.optout then
    redis.call("zremrangebyscore", KEY.optouts, "-inf", doc.now_ms - doc.keep_ms)
    if redis.call("zadd", KEY.optouts, "NX", doc.now_ms, doc.optout.number) == 1 then
        redis.call("incr", KEY.blacklist_gen)
        enqueue(KEY.queue, KEY.messages, doc.optout.queue, doc.actor, doc.optout.message_id, doc.optout.payload,
            doc.timestamp_ms, doc.queue_cap, KEY.stats)
        published_optout = 1
        if doc.campaign then campaign_opted_out(KEYS[doc.campaign], doc.campaign_ttl_s) end
    end
end
return {published_incoming, published_optout}
