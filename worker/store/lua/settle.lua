-- settle: record the outcome of one OVH call for each request in it, settle the credits those
-- requests reserved on their user's quota, and, for every request whose last receiver this
-- settles, write its one result and publish it, all atomically: a result is published exactly
-- once, a call is settled at most once, and its credits are moved out of "reserved" once.
--
-- ARGV: prefix, call_id, finished_at (unix s), result_ttl_s, namespace, result_actor,
--       quota_key (the user's quota hash; "" when the call has no user), n_groups,
--       then per request group:
--         request_id, n_in_call, n_sent, n_failed, n_unknown, credits_share,
--         outcome_fragments (JSON objects joined by ","), error_json ("" for none),
--         reply_message_id, message_timestamp_ms, credits_reserved, credits_spent,
--       then n_events, then per event: queue, message_id, payload_json, message_timestamp_ms,
--       then tracking: JSON {ttl, records: [{id, request_id, receiver, reply_to, tag, service,
--       login, call_id, sent_at}]}: one hash per SMS OVH accepted (keys.sms), for delivery reports
--       (events are CreditUsage payloads: "quota_left" is added when the user has a quota)
-- credits_spent is OVH's share for the request plus what it reserved for receivers whose
-- outcome is unknown: OVH may have debited those, so they are never refunded (the quota errs
-- on the side of spending less than it holds). The rest of credits_reserved is refunded:
-- receivers OVH refused as invalid, calls that failed, estimates above OVH's figure.
-- (enqueue and keep_result come from _publish.lua, prepended when the script is loaded.)
-- Returns the number of results published, or -1 if the call was already settled.
local prefix, call_id, finished_at, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local namespace, result_actor, quota_key = ARGV[5], ARGV[6], ARGV[7]

if call_id ~= "" then
    if redis.call("del", prefix .. "attempt:" .. call_id) == 0 then
        return -1
    end
    redis.call("zrem", prefix .. "attempts", call_id)
end

local published = 0
local released, spent = 0, 0
local i = 9
for _ = 1, tonumber(ARGV[8]) do
    local request_id, n_in_call = ARGV[i], tonumber(ARGV[i + 1])
    local request = prefix .. "req:" .. request_id
    local outcomes = prefix .. "outcomes:" .. request_id
    released = released + tonumber(ARGV[i + 10])
    spent = spent + tonumber(ARGV[i + 11])
    if redis.call("exists", request) == 1 then
        if ARGV[i + 6] ~= "" then redis.call("rpush", outcomes, ARGV[i + 6]) end
        if ARGV[i + 7] ~= "" then redis.call("hset", request, "error", ARGV[i + 7]) end
        redis.call("hincrby", request, "sent", ARGV[i + 2])
        redis.call("hincrby", request, "failed", ARGV[i + 3])
        redis.call("hincrby", request, "unknown", ARGV[i + 4])
        redis.call("hincrbyfloat", request, "credits", ARGV[i + 5])
        if redis.call("hincrby", request, "remaining", -n_in_call) <= 0 then
            local h = redis.call("hmget", request, "skeleton", "reply_to", "sent", "failed", "unknown", "credits", "error")
            local sent, failed, unknown = tonumber(h[3]), tonumber(h[4]), tonumber(h[5])
            local status
            if sent > 0 and failed + unknown == 0 then status = "sent"
            elseif sent > 0 then status = "partial"
            elseif unknown > 0 then status = "unknown"
            elseif failed > 0 then status = "failed"
            else status = "rejected" end
            local result = string.sub(h[1], 1, -2) .. ',"status":"' .. status .. '","credits":' .. h[6]
                .. ',"receivers":[' .. table.concat(redis.call("lrange", outcomes, 0, -1), ",") .. ']'
                .. ',"finished_at":' .. finished_at
            if h[7] then result = result .. ',"error":' .. h[7] end
            result = result .. "}"
            keep_result(prefix, request_id, result, ttl)
            enqueue(namespace, h[2], result_actor, ARGV[i + 8], result, ARGV[i + 9])
            redis.call("del", request, outcomes)
            published = published + 1
        end
    end
    i = i + 12
end

local quota_left
if quota_key ~= "" then
    local reserved = tonumber(redis.call("hincrbyfloat", quota_key, "reserved", -released))
    if math.abs(reserved) < 1e-9 then  -- float sums of rates: do not leave dust behind
        redis.call("hset", quota_key, "reserved", 0)
        reserved = 0
    end
    local total_spent = tonumber(redis.call("hincrbyfloat", quota_key, "spent", spent))
    local quota = tonumber(redis.call("hget", quota_key, "quota"))
    if quota then quota_left = quota - reserved - total_spent end
end

for _ = 1, tonumber(ARGV[i]) do
    local payload = ARGV[i + 3]
    if quota_left then
        payload = string.sub(payload, 1, -2) .. ',"quota_left":' .. cjson.encode(quota_left) .. '}'
    end
    enqueue(namespace, ARGV[i + 1], result_actor, ARGV[i + 2], payload, ARGV[i + 4])
    i = i + 4
end

local tracking = cjson.decode(ARGV[i + 1])
if tracking.ttl > 0 then
    -- pull mode (worker/inbound/pull.py): while a poller runs (keys.PULL), index each SMS for
    -- its receipt poll (keys.RECEIPTS, scored by the first poll's time in ms)
    local poll_delay_ms = redis.call("hget", prefix .. "pull", "first_poll_delay_ms")
    for _, r in ipairs(tracking.records) do
        local key = prefix .. "sms:" .. string.format("%.0f", r.id)
        if poll_delay_ms then
            local first_poll_ms = math.floor(tonumber(r.sent_at) * 1000 + tonumber(poll_delay_ms))
            redis.call("zadd", prefix .. "receipts", first_poll_ms, string.format("%.0f", r.id))
        end
        local fields = {}
        for _, name in ipairs({"request_id", "receiver", "reply_to", "tag", "service", "login", "call_id", "sent_at"}) do
            if r[name] ~= nil and r[name] ~= cjson.null then
                table.insert(fields, name)
                table.insert(fields, tostring(r[name]))
            end
        end
        redis.call("hset", key, unpack(fields))
        redis.call("expire", key, tracking.ttl)
    end
end
return published
