-- stage: for each request of a pack, dedupe it, reserve its credits on its user's quota, and
-- stage its receivers into batch buffers, each request in one atomic step: a redelivered
-- message changes nothing, and no two threads or replicas can both take a quota's last credits.
--
-- The seen marker (keys.seen) says what happened to a request id: "s:<token>" staged by the
-- stage call of that token (the same call sent again after its reply was lost answers "staged"
-- again), "r:<token>" rejected for good, "t:<delivery>" refused for a cause that was not the
-- request's own (its quota, the account, a rate not known yet) by the queue message of that
-- delivery: the same message redelivered is a duplicate, a new message with that id is a resend
-- (its earlier result is cleared).
--
-- KEY: stats (hash), quotas (set of quota hashes); then the keys the document refers to by index.
-- ARGV[1]: {token, delivery, dedupe_ttl_s, request_ttl_s, max_per_call, linger: {lane: ms}, linger_cap,
--   queue_cap, result_actor,
--   alert_sms_queue, alert_sms_actor, metas: {batch key: meta JSON},
--   requests: [{id, seen, req, outcomes, result, ready (key indexes), skeleton, reply_to, invalid, n_invalid,
--     n_valid, credits,
--     quota: {key, service, login, alert_queue, alert_q, alert_msgs, alert_sms, alert_sms_template,
--             sms_q, sms_msgs} | absent,
--     batches: [{key, lane, buf, bufmeta, due, wake, not_before (unix ms held until, 0: not held),
--                entries: ["<request id>|<E.164>|<credits>|<reply_to or empty>", ...]}]}]}
--   (skeleton: the result's JSON without status, credits, receivers and finished_at;
--    invalid: JSON objects of the receivers set aside, joined by ",")
-- Returns one reply per request: "staged", "duplicate", or "quota:<credits left>" (refused by the
-- user's quota: nothing changed, the caller publishes the rejection).
local doc = cjson.decode(ARGV[1])
local stats, quotas = KEY.stats, KEY.quotas
local now = now_ms()
local now_text = int(now)
local EPSILON = 1e-9

local function amount(x)  -- credits as text: whole numbers without a decimal point
    if x == math.floor(x) then return int(x) end
    return (string.gsub(string.format("%.6f", x), "%.?0+$", ""))
end

-- Publish a QuotaAlert (and the alert SMS request) for a reservation that crossed the threshold.
local function alert(r, qr, q, quota, threshold, left, number)
    redis.call("hset", q, "armed", 0)
    local crossing = redis.call("hincrby", q, "crossings", 1)
    local service, login = qr.service, qr.login
    local event = {
        kind = "quota_alert", version = 1, alert_id = service .. "/" .. login .. "/" .. crossing,
        service_name = service, user = login, quota = quota, alert_threshold = threshold,
        quota_left = left, request_id = r.id, at = now / 1000,
    }
    if number and qr.alert_sms then
        local values = { user = login, service = service, quota_left = amount(left), threshold = amount(threshold) }
        local text = string.gsub(qr.alert_sms_template, "{([%w_]+)}", function(name) return values[name] end)
        event.alert_number = number
        event.alert_request_id = "quota-alert/" .. service .. "/" .. login .. "/" .. crossing
        enqueue(KEYS[qr.sms_q], KEYS[qr.sms_msgs], doc.alert_sms_queue, doc.alert_sms_actor,
            "quota-alert-sms:" .. event.alert_id .. ":" .. now_text, cjson.encode({
                kind = "send_request", version = 1, request_id = event.alert_request_id, service_name = service,
                message = text, receivers = { number }, priority = "high", no_stop_clause = true,
                reply_to = qr.alert_queue, metadata = { quota_alert = event.alert_id },
            }), now, 0, stats)
    end
    enqueue(KEYS[qr.alert_q], KEYS[qr.alert_msgs], qr.alert_queue, doc.result_actor,
        "quota-alert:" .. event.alert_id .. ":" .. now_text, cjson.encode(event), now, doc.queue_cap, stats)
end

-- Reservation: a user with a quota is refused whole when the estimate exceeds its quota left;
-- any user's reserved credits are counted, so a quota set later finds them. Returns nil when
-- reserved, else the credits left.
local function reserve(r)
    local qr = r.quota
    local q = KEYS[qr.key]
    local need = r.credits
    local h = redis.call("hmget", q, "quota", "reserved", "spent", "threshold", "armed", "alert_number")
    local quota, reserved, spent = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
    if quota and need > quota - reserved - spent + EPSILON then
        return math.max(quota - reserved - spent, 0)
    end
    if not h[2] then
        redis.call("hset", q, "service", qr.service, "login", qr.login, "spent", 0)
        redis.call("sadd", quotas, q)
    end
    reserved = tonumber(redis.call("hincrbyfloat", q, "reserved", need))
    local threshold = tonumber(h[4])
    -- A crossing: quota left going from above the threshold (or a fresh configuration) to at or
    -- below it. Disarmed here, in the step that moved the quota, so it is published once; only
    -- a quota raised above the threshold again (quota_set.lua) re-arms it.
    if quota and threshold and h[5] == "1" and quota - reserved - spent <= threshold + EPSILON then
        alert(r, qr, q, quota, threshold, quota - reserved - spent, h[6])
    end
    return nil
end

local replies = {}
local due_set = {}  -- batch keys whose due time this call already set (one "now" for the whole pack)
for n, r in ipairs(doc.requests) do
    local reply = "duplicate"
    local marker = redis.call("get", KEYS[r.seen])
    local resend = marker and string.sub(marker, 1, 2) == "t:" and marker ~= "t:" .. doc.delivery
    if marker == "s:" .. doc.token then
        reply = "staged"  -- by this very call, whose reply was lost
    elseif not marker or resend then
        local left = nil
        if r.quota then left = reserve(r) end
        if left then
            reply = "quota:" .. amount(left)
        else
            reply = "staged"
            if resend then redis.call("del", KEYS[r.result], KEYS[r.ready]) end
            redis.call("set", KEYS[r.seen], "s:" .. doc.token, "EX", doc.dedupe_ttl_s)
            local req, outcomes = KEYS[r.req], KEYS[r.outcomes]
            redis.call("hset", req, "skeleton", r.skeleton, "reply_to", r.reply_to, "remaining", r.n_valid,
                "sent", 0, "failed", 0, "unknown", 0, "invalid", r.n_invalid, "credits", 0)
            redis.call("expire", req, doc.request_ttl_s)
            if r.invalid ~= "" then
                redis.call("rpush", outcomes, r.invalid)
                redis.call("expire", outcomes, doc.request_ttl_s)
            end
            for _, batch in ipairs(r.batches) do
                local buf, due = KEYS[batch.buf], KEYS[batch.due]
                local entries = {}
                for i, entry in ipairs(batch.entries) do entries[i] = now_text .. "|" .. entry end
                local length = redis.call("rpush", buf, unpack(entries))
                local linger = doc.linger[batch.lane]
                if not due_set[batch.key] then  -- once per batch key and pack
                    redis.call("set", KEYS[batch.bufmeta], doc.metas[batch.key], "NX")
                end
                if (batch.not_before or 0) > now then
                    -- held by the worker (quiet hours): due at the window's end, full or not
                    -- (its batch key is its own: nothing due sooner shares it)
                    if redis.call("zadd", due, "NX", batch.not_before, batch.key) == 1 then
                        wake(KEYS[batch.wake])
                    end
                elseif linger == 0 or length >= doc.max_per_call then
                    redis.call("zadd", due, "LT", now, batch.key)
                    wake(KEYS[batch.wake])
                    due_set[batch.key] = true
                elseif due_set[batch.key] then
                    -- set by an earlier request of this pack, at this same "now": nothing moves
                elseif redis.call("zadd", due, "NX", now + linger, batch.key) == 1 then
                    -- a new buffer: wake a dispatcher so it sleeps until this one is due
                    wake(KEYS[batch.wake])
                else
                    -- still filling: due a linger after its newest entry, never later than
                    -- linger_cap lingers after its oldest (a steady stream fills whole calls)
                    local oldest = tonumber(string.match(redis.call("lindex", buf, 0), "^(%d+)|"))
                    redis.call("zadd", due, "XX", "GT", math.min(now + linger, oldest + doc.linger_cap * linger), batch.key)
                end
                due_set[batch.key] = true
            end
        end
    end
    replies[n] = reply
end
return replies
