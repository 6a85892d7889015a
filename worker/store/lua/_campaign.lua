-- Campaign statistics per SMS account and tag (keys.campaign_stats), kept by the worker itself so
-- that `sms-worker campaign report` costs no OVH call, whatever the campaign's size. Prepended to
-- every script after _common.lua (worker/store/scripts.py); worker/campaigns/stats.py reads the
-- hash and mirrors the constants below. Fields:
--   service, tag          what the hash counts
--   requests:<status>     requests of the tag whose result was published (sent, partial, failed, unknown, rejected)
--   receivers:<outcome>   SMS settled: sent, failed (OVH refused the call), invalid (OVH refused the number), unknown
--   credits               OVH's credits for the SMS settled
--   first_ms, last_ms     Redis time (ms) of the first and the last settlement that sent an SMS
--   minute:<n>            SMS sent in the n-th minute after first_ms (n capped at CAMPAIGN_MAX_MINUTE)
--   dlr:<status>          SMS whose latest delivery report has this status (see CAMPAIGN_DLR)
--   ptt:<code>            failed or expired SMS by their final ptt code ("none" when the report had none)
--   delay:<n>             delivered SMS whose delivery took at most CAMPAIGN_DELAY_EDGES_S[n] seconds
--                         after it was sent (n = #edges + 1: longer; "none": a time was missing)
--   opt_outs              STOP replies to the campaign
-- Bounded: those fields only (minutes capped, ptt codes are OVH's few), and every write refreshes
-- the hash's TTL (campaign_stats_ttl_s); a TTL of 0 keeps nothing.

-- Upper edges (seconds) of the delivery-time histogram's buckets (mirrored by DELAY_EDGES_S).
local CAMPAIGN_DELAY_EDGES_S = {
    0.5, 1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700,
    3600, 5400, 7200, 10800, 14400, 21600, 43200, 86400, 172800, 259200, 604800,
}
-- Last minute bucket of the sends-over-time series (7 days): later sends are counted in it.
local CAMPAIGN_MAX_MINUTE = 10080
-- Delivery report statuses: a final one is never replaced by a later report.
local CAMPAIGN_DLR = { delivered = "final", failed = "final", expired = "final", unknown = "open", pending = "open" }

local function campaign_touch(stats, ttl_s)
    redis.call("expire", stats, ttl_s)
end

local function campaign_delay_bucket(seconds)
    for n, edge in ipairs(CAMPAIGN_DELAY_EDGES_S) do
        if seconds <= edge then return n end
    end
    return #CAMPAIGN_DELAY_EDGES_S + 1
end

-- One settlement of a tagged attempt (settle.lua). c: {service, tag, ttl_s, sent, failed, invalid,
-- unknown (SMS counts), credits}; published: the statuses of the results this settlement published.
local function campaign_settled(stats, c, published, now)
    if not (c.ttl_s and c.ttl_s > 0) then return end
    for _, status in ipairs(published) do
        redis.call("hincrby", stats, "requests:" .. status, 1)
    end
    for _, outcome in ipairs({ "sent", "failed", "invalid", "unknown" }) do
        if (c[outcome] or 0) > 0 then redis.call("hincrby", stats, "receivers:" .. outcome, c[outcome]) end
    end
    if (c.credits or 0) ~= 0 then redis.call("hincrbyfloat", stats, "credits", c.credits) end
    if (c.sent or 0) > 0 then
        redis.call("hsetnx", stats, "first_ms", int(now))
        local first = tonumber(redis.call("hget", stats, "first_ms"))
        local minute = math.min(math.max(math.floor((now - first) / 60000), 0), CAMPAIGN_MAX_MINUTE)
        redis.call("hincrby", stats, "minute:" .. minute, c.sent)
        redis.call("hset", stats, "last_ms", int(now))
    end
    redis.call("hset", stats, "service", c.service, "tag", c.tag)
    campaign_touch(stats, c.ttl_s)
end

-- One delivery report of the SMS whose tracking hash (keys.sms, written at settlement) is `sms`.
-- d: {status (a key of CAMPAIGN_DLR), ptt, sent_at, delivered_at (unix s; sent_at defaults to the
-- tracking hash's), ttl_s}. Idempotent and order-proof: the status counted for the SMS is kept on
-- its tracking hash (field campaign_dlr); a report repeating it changes nothing and a final status
-- is never replaced, so at-least-once, unordered reports count each SMS once.
-- Returns 1 when the counters changed, else 0 (SMS not tracked, repeat, already final, TTL 0).
local function campaign_delivered(stats, sms, d)
    if not CAMPAIGN_DLR[d.status] then error("campaign_delivered: unknown status " .. tostring(d.status)) end
    if not (d.ttl_s and d.ttl_s > 0) or redis.call("exists", sms) == 0 then return 0 end
    local previous = redis.call("hget", sms, "campaign_dlr")
    if previous == d.status or (previous and CAMPAIGN_DLR[previous] == "final") then return 0 end
    redis.call("hset", sms, "campaign_dlr", d.status)
    if previous then redis.call("hincrby", stats, "dlr:" .. previous, -1) end
    redis.call("hincrby", stats, "dlr:" .. d.status, 1)
    if d.status == "failed" or d.status == "expired" then
        redis.call("hincrby", stats, "ptt:" .. (tonumber(d.ptt) and int(d.ptt) or "none"), 1)
    elseif d.status == "delivered" then
        local sent_at = tonumber(d.sent_at) or tonumber(redis.call("hget", sms, "sent_at"))
        local delivered_at = tonumber(d.delivered_at)
        local bucket = "none"
        if sent_at and delivered_at then bucket = campaign_delay_bucket(delivered_at - sent_at) end
        redis.call("hincrby", stats, "delay:" .. bucket, 1)
    end
    campaign_touch(stats, d.ttl_s)
    return 1
end

-- One STOP reply to an SMS of the campaign. Count each opt-out once: call it only when the
-- opt-out is new (for instance when adding the number to the opt-out set added it).
local function campaign_opted_out(stats, ttl_s)
    if not (ttl_s and ttl_s > 0) then return 0 end
    redis.call("hincrby", stats, "opt_outs", 1)
    campaign_touch(stats, ttl_s)
    return 1
end
