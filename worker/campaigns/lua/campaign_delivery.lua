-- campaign_delivery: count one delivery report of a sent SMS into its campaign's statistics
-- (campaign_delivered in _campaign.lua: idempotent per SMS, a final status is never replaced).
--
-- KEY: sms (the SMS's tracking hash, keys.sms), stats (its campaign's statistics, keys.campaign_stats)
-- ARGV[1]: {status, ptt, sent_at, delivered_at (unix s), ttl_s}
-- Returns 1 when the counters changed, else 0.
local doc = cjson.decode(ARGV[1])
return campaign_delivered(KEY.stats, KEY.sms, doc)
