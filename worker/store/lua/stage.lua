-- stage: for each request of a pack, dedupe it, reserve its credits on its user's quota, and
-- stage its receivers into batch buffers, each request in one atomic step: a redelivered
-- message changes nothing, and no two threads or replicas can both take a quota's last credits.
--
-- ARGV[1]: one JSON document (a single argument is cheap to send, whatever the pack's size):
--   {prefix, now_ms, dedupe_ttl_s, max_per_call, namespace, result_ttl_s, result_actor,
--    alert_sms_queue, alert_sms_actor, linger: {lane: ms},
--    requests: [{id, skeleton, reply_to, invalid, n_invalid, n_valid, credits,
--                quota: {service, login, alert_queue, alert_sms, alert_sms_template} | absent,
--                batches: [{key, lane, meta, entries: ["<arrival ms>|<request id>|<E.164>|<credits>", ...]}]}]}
--   (skeleton: the result's JSON without status, credits, receivers and finished_at;
--    invalid: JSON objects of the receivers set aside, joined by ",")
-- (enqueue and keep_result come from _publish.lua, prepended when the script is loaded.)
-- Returns one code per request: 1 staged, 0 a repeat (nothing changed), 2 refused by the
-- user's quota (its rejected result is published).
local doc = cjson.decode(ARGV[1])
local prefix, now, namespace, result_actor = doc.prefix, doc.now_ms, doc.namespace, doc.result_actor
local EPSILON = 1e-9

local now_text = string.format("%d", now)

-- Message ids name what they carry and when: unique without drawing random numbers (a request
-- id may come back once its dedupe marker has expired, while its old result still waits).
local function message_id(name)
    return name .. ":" .. now_text
end

local function amount(x)  -- credits as text: whole numbers without a decimal point
    if x == math.floor(x) then return string.format("%d", x) end
    return (string.gsub(string.format("%.6f", x), "%.?0+$", ""))
end

-- Reservation: a user with a quota is refused whole when the estimate exceeds its quota left;
-- any user's reserved credits are counted, so a quota set later finds them. Returns false when
-- refused (the rejected result is published here).
local function reserve(r)
    local qr = r.quota
    local q = prefix .. "quota:" .. qr.service .. ":" .. qr.login
    local need, service, login = r.credits, qr.service, qr.login
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
        local result = string.sub(r.skeleton, 1, -2) .. ',"status":"rejected","credits":0,"receivers":['
            .. r.invalid .. '],"finished_at":' .. string.format("%.3f", now / 1000) .. ',"error":' .. err .. '}'
        keep_result(prefix, r.id, result, doc.result_ttl_s)
        enqueue(namespace, r.reply_to, result_actor, message_id("result:" .. r.id), result, now_text)
        return false
    end
    if not h[2] then
        redis.call("hset", q, "service", service, "login", login, "spent", 0)
        redis.call("sadd", prefix .. "quotas", q)
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
            quota_left = left, request_id = r.id, at = now / 1000,
        }
        local alert_queue = qr.alert_queue or r.reply_to
        local number = h[6]
        if number and qr.alert_sms then
            local values = { user = login, service = service, quota_left = amount(left), threshold = amount(threshold) }
            local text = string.gsub(qr.alert_sms_template, "{([%w_]+)}", function(name) return values[name] end)
            alert.alert_number = number
            alert.alert_request_id = "quota-alert/" .. service .. "/" .. login .. "/" .. crossing
            enqueue(namespace, doc.alert_sms_queue, doc.alert_sms_actor, message_id("quota-alert-sms:" .. alert.alert_id), cjson.encode({
                kind = "send_request", version = 1, request_id = alert.alert_request_id, service_name = service,
                message = text, receivers = { number }, priority = "high", no_stop_clause = true,
                reply_to = alert_queue, metadata = { quota_alert = alert.alert_id },
            }), now_text)
        end
        enqueue(namespace, alert_queue, result_actor, message_id("quota-alert:" .. alert.alert_id), cjson.encode(alert), now_text)
    end
    return true
end

local codes = {}
local woke = 0
for n, r in ipairs(doc.requests) do
    local code = 0
    if redis.call("set", prefix .. "seen:" .. r.id, now, "NX", "EX", doc.dedupe_ttl_s) then
        code = 2
        if not r.quota or reserve(r) then
            code = 1
            redis.call("hset", prefix .. "req:" .. r.id, "skeleton", r.skeleton, "reply_to", r.reply_to,
                "remaining", r.n_valid, "sent", 0, "failed", 0, "unknown", 0, "invalid", r.n_invalid, "credits", 0)
            if r.invalid ~= "" then
                redis.call("rpush", prefix .. "outcomes:" .. r.id, r.invalid)
            end
            for _, batch in ipairs(r.batches) do
                local buffer = prefix .. "buf:" .. batch.key
                redis.call("set", prefix .. "bufmeta:" .. batch.key, batch.meta, "NX")
                local length = redis.call("rpush", buffer, unpack(batch.entries))
                local due = prefix .. "due:" .. batch.lane
                local linger = doc.linger[batch.lane]
                if linger == 0 or length >= doc.max_per_call then
                    redis.call("zadd", due, "LT", now, batch.key)
                    woke = 1
                else
                    -- a new buffer: wake a dispatcher so it sleeps until this one is due
                    woke = math.max(woke, redis.call("zadd", due, "NX", now + linger, batch.key))
                end
            end
        end
    end
    codes[n] = code
end
if woke == 1 then
    redis.call("lpush", prefix .. "wake", 1)
    redis.call("ltrim", prefix .. "wake", 0, 63)
end
return codes
