-- campaign_delivery: count one delivery report of a sent SMS into its campaign's statistics
-- (campaign_delivered in _campaign.lua: idempotent per SMS, a final status is never replaced).
--
-- KEYS: the SMS's tracking hash (keys.sms), its campaign's statistics hash (keys.campaign_stats)
-- ARGV[1]: {status, ptt, sent_at, delivered_at (unix s), ttl_s}
-- Returns 1 when the counters changed, else 0.
local doc = cjson.decode(ARGV[1])
return campaign_delivered(KEYS[2], KEYS[1], doc)
