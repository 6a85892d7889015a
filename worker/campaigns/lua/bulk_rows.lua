-- bulk_rows: the results of rows of a bulk campaign (worker/campaigns/outcomes.py), each published
-- once: a row whose result key exists is skipped, so callbacks, tag listings and a cancel that
-- race publish one result per row. For a row sent, its SMS is mapped to it (keys.sms, as settle.lua
-- does for requests) so its delivery reports reach the results queue; the quota is settled with
-- OVH's credits (reserved estimate released, OVH's credits spent); the campaign's counters move.
--
-- KEY: campaign (hash), stats, quota (or any key when the worker keeps no quota for the campaign),
--      seen (the campaign's mapped SMS ids), tag_stats (outcomes.py: BulkRowsKeys); then keys by index.
-- ARGV[1]: {result_ttl_s, queue_cap, result_actor, tracking_ttl_s, stats_ttl_s, has_quota, service, tag,
--   rows: [{id, result, ready, q, msgs (key indexes), queue, status, payload, estimate, credits,
--           sms (key index) | absent, ovh_id, tracking: {field: value} | absent}]}
-- Returns the number of results published.
local campaign, stats, quota, seen, tag_stats = KEY.campaign, KEY.stats, KEY.quota, KEY.seen, KEY.tag_stats
local doc = cjson.decode(ARGV[1])
local now = now_ms()
local published, released, spent = 0, 0, 0
local counts = {}
local receivers = { sent = 0, failed = 0, unknown = 0, invalid = 0 }
local statuses = {}
for _, row in ipairs(doc.rows) do
    if redis.call("exists", KEYS[row.result]) == 0 then
        keep_result(KEYS[row.result], KEYS[row.ready], row.payload, doc.result_ttl_s)
        enqueue(KEYS[row.q], KEYS[row.msgs], row.queue, doc.result_actor, "result:" .. row.id .. ":" .. int(now),
            row.payload, now, doc.queue_cap, stats)
        published = published + 1
        counts[row.status] = (counts[row.status] or 0) + 1
        table.insert(statuses, row.status)
        released = released + row.estimate
        spent = spent + row.credits
        if row.status == "sent" or row.status == "failed" then
            receivers[row.status] = receivers[row.status] + 1
        end
        if row.sms and doc.tracking_ttl_s > 0 then
            local fields = {}
            for name, value in pairs(row.tracking) do
                table.insert(fields, name)
                table.insert(fields, tostring(value))
            end
            redis.call("hset", KEYS[row.sms], unpack(fields))
            redis.call("expire", KEYS[row.sms], doc.tracking_ttl_s)
        end
    end
    if row.ovh_id then redis.call("sadd", seen, row.ovh_id) end
end
if #doc.rows > 0 then redis.call("expire", seen, doc.tracking_ttl_s > 0 and doc.tracking_ttl_s or 86400) end
for status, n in pairs(counts) do
    redis.call("hincrby", campaign, "rows_" .. status, n)
    redis.call("hincrby", campaign, "window_" .. status, n)
end
if doc.has_quota and published > 0 then
    local reserved = tonumber(redis.call("hincrbyfloat", quota, "reserved", -released))
    if math.abs(reserved) < 1e-9 then redis.call("hset", quota, "reserved", 0) end
    redis.call("hincrbyfloat", quota, "spent", spent)
end
if published > 0 and doc.tag ~= "" then
    campaign_settled(tag_stats, { service = doc.service, tag = doc.tag, ttl_s = doc.stats_ttl_s,
        sent = receivers.sent, failed = receivers.failed, credits = spent }, statuses, now)
end
return published
