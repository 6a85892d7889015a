-- stage: dedupe a request, reserve its credits on its user's quota, and stage its receivers
-- into batch buffers, in one atomic step: a redelivered message changes nothing, and no two
-- threads or replicas can both take the last credits of a quota.
--
-- KEYS[1]  seen marker of the request        KEYS[2]  request hash
-- KEYS[3]  the user's quota hash, KEYS[4] the set of quota hashes (both only for a user)
-- ARGV: prefix, request_id, now_ms, dedupe_ttl_s, skeleton_json, reply_to, n_valid,
--       invalid_fragments (JSON objects joined by ","; "" for none), n_invalid,
--       max_receivers_per_call,
--       credits_needed, service, login, namespace, result_ttl_s, result_actor, reject_message_id,
--       alert_queue, alert_message_id, alert_sms ("1" to send one when a number is known),
--       alert_sms_template, alert_sms_queue, alert_sms_actor, alert_sms_message_id,
--       n_batches, then per batch: batch_key, lane, linger_ms, meta_json, n_entries, entries...
-- Entries are "<arrival ms>|<request id>|<receiver E.164>|<credits estimate>".
-- Returns {1, woke} when staged (woke = 1 if a buffer became due or new), {0, 0} for a repeat,
-- {2, 0} when the user's quota cannot cover the request (its rejected result is published).
local prefix, request_id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not redis.call("set", KEYS[1], now, "NX", "EX", tonumber(ARGV[4])) then
    return {0, 0}
end
local namespace, result_actor = ARGV[14], ARGV[16]
local EPSILON = 1e-9

local function enqueue(queue, actor, message_id, payload)
    redis.call("hset", namespace .. ":" .. queue .. ".msgs", message_id, '{"queue_name":' .. cjson.encode(queue)
        .. ',"actor_name":"' .. actor .. '","args":[' .. payload .. '],"kwargs":{},"options":{"redis_message_id":"'
        .. message_id .. '"},"message_id":"' .. message_id .. '","message_timestamp":' .. ARGV[3] .. '}')
    redis.call("rpush", namespace .. ":" .. queue, message_id)
end

local function amount(x)  -- credits as text: whole numbers without a decimal point
    if x == math.floor(x) then return string.format("%d", x) end
    return (string.gsub(string.format("%.6f", x), "%.?0+$", ""))
end

-- Reservation: a user with a quota is refused whole when the estimate exceeds its quota left;
-- any user's reserved credits are counted, so a quota set later finds them.
if KEYS[3] then
    local q = KEYS[3]
    local need, service, login = tonumber(ARGV[11]), ARGV[12], ARGV[13]
    local h = redis.call("hmget", q, "quota", "reserved", "spent", "threshold", "armed", "alert_number")
    local quota, reserved, spent = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
    if quota and need > quota - reserved - spent + EPSILON then
        local left = math.max(quota - reserved - spent, 0)
        local err = cjson.encode({
            code = "quota_exceeded",
            message = "quota of user " .. login .. " exceeded: this request needs " .. amount(need)
                .. " credits and the quota has " .. amount(left) .. " left",
            field = "user",
            credits_needed = need,
            credits_left = left,
        })
        local result = string.sub(ARGV[5], 1, -2) .. ',"status":"rejected","credits":0,"receivers":['
            .. ARGV[8] .. '],"finished_at":' .. string.format("%.3f", now / 1000) .. ',"error":' .. err .. '}'
        local ttl = tonumber(ARGV[15])
        redis.call("set", prefix .. "result:" .. request_id, result, "EX", ttl)
        redis.call("lpush", prefix .. "result:" .. request_id .. ":ready", 1)
        redis.call("expire", prefix .. "result:" .. request_id .. ":ready", ttl)
        enqueue(ARGV[6], result_actor, ARGV[17], result)
        return {2, 0}
    end
    if not h[2] then
        redis.call("hset", q, "service", service, "login", login, "spent", 0)
        redis.call("sadd", KEYS[4], q)
    end
    reserved = tonumber(redis.call("hincrbyfloat", q, "reserved", need))
    local threshold = tonumber(h[4])
    -- A crossing: quota left going from above the threshold (or a fresh configuration) to at or
    -- below it. Disarmed here, in the step that moved the quota, so it is published once; only
    -- a quota raised above the threshold again (quota_set.lua) re-arms it.
    if quota and threshold and h[5] == "1" and quota - reserved - spent <= threshold + EPSILON then
        redis.call("hset", q, "armed", 0)
        local crossing = redis.call("hincrby", q, "crossings", 1)
        local left = quota - reserved - spent
        local alert = {
            kind = "quota_alert", version = 1, alert_id = service .. "/" .. login .. "/" .. crossing,
            service_name = service, user = login, quota = quota, alert_threshold = threshold,
            quota_left = left, request_id = request_id, at = now / 1000,
        }
        local number = h[6]
        if number and ARGV[20] == "1" then
            local values = { user = login, service = service, quota_left = amount(left), threshold = amount(threshold) }
            local text = string.gsub(ARGV[21], "{([%w_]+)}", function(name) return values[name] end)
            alert.alert_number = number
            alert.alert_request_id = "quota-alert/" .. service .. "/" .. login .. "/" .. crossing
            enqueue(ARGV[22], ARGV[23], ARGV[24], cjson.encode({
                kind = "send_request", version = 1, request_id = alert.alert_request_id, service_name = service,
                message = text, receivers = { number }, priority = "high", no_stop_clause = true,
                reply_to = ARGV[18], metadata = { quota_alert = alert.alert_id },
            }))
        end
        enqueue(ARGV[18], result_actor, ARGV[19], cjson.encode(alert))
    end
end

redis.call("hset", KEYS[2], "skeleton", ARGV[5], "reply_to", ARGV[6], "remaining", ARGV[7],
    "sent", 0, "failed", 0, "unknown", 0, "invalid", ARGV[9], "credits", 0)
if ARGV[8] ~= "" then
    redis.call("rpush", prefix .. "outcomes:" .. request_id, ARGV[8])
end
local max_per_call = tonumber(ARGV[10])
local woke = 0
local i = 26
for _ = 1, tonumber(ARGV[25]) do
    local batch_key, lane, linger, meta, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], tonumber(ARGV[i + 4])
    local buffer = prefix .. "buf:" .. batch_key
    redis.call("set", prefix .. "bufmeta:" .. batch_key, meta, "NX")
    local length = redis.call("rpush", buffer, unpack(ARGV, i + 5, i + 4 + n))
    local due = prefix .. "due:" .. lane
    if linger == 0 or length >= max_per_call then
        redis.call("zadd", due, "LT", now, batch_key)
        woke = 1
    else
        -- a new buffer: wake a dispatcher so it sleeps until this one is due
        woke = math.max(woke, redis.call("zadd", due, "NX", now + linger, batch_key))
    end
    i = i + 5 + n
end
if woke == 1 then
    redis.call("lpush", prefix .. "wake", 1)
    redis.call("ltrim", prefix .. "wake", 0, 63)
end
return {1, woke}
