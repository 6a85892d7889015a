-- campaign_opt_out: count one STOP reply into a campaign's statistics (campaign_opted_out in
-- _campaign.lua; the caller counts each opt-out once).
--
-- KEY: stats (the campaign's statistics hash, keys.campaign_stats)
-- ARGV[1]: {ttl_s}
-- Returns 1 when counted, else 0 (statistics not kept).
local doc = cjson.decode(ARGV[1])
return campaign_opted_out(KEY.stats, doc.ttl_s)
