-- settle: the end of an attempt. Record what the call did for each request in it, settle the
-- credits those requests reserved on their user's quota, write and publish the result of every
-- request whose last receiver this settles, publish the call's CreditUsage events, mark each SMS
-- OVH made as this call's (keys.sms: the proof of one attempt only, and for delivery reports the
-- request and receiver it was sent for), and stage again the receivers a reconciliation proved
-- absent: all in one step, so a result is published exactly once and an attempt is settled at
-- most once. Every check that can refuse runs before the first write.
--
-- The settled attempt leaves a tombstone (state "settled", by the caller's token, the statuses
-- published) for tombstone_ttl_s: the same settle sent again after its reply was lost answers
-- "already" with what it published, and nothing is applied twice.
--
-- KEY: attempt, lease (the caller's), inflight, reconcile, stats, the attempt's batch key's buffer,
--      buffer_meta, due (its lane's) and wake, pull (marker), receipts (set) and receipts_order
--      (list) of pull mode; then the keys the document refers to by index.
-- ARGV[1]: {call_id, fence ("owner": the caller must own the attempt and hold its lease;
--   "reconciler": the attempt must be ambiguous), token (the owner's lease token, or the
--   reconciler's look), worker, quota (key index of the call's user's quota hash | absent when
--   the call has no user), result_ttl_s, request_ttl_s, queue_cap, result_actor, tombstone_ttl_s,
--   settlements: [{id, req, outcomes, result, ready, q, msgs (key indexes), queue, n_in_call,
--     n_sent, n_failed, n_unknown, credits, fragments, error, reserved, spent}],
--   events: [{q, msgs, queue, message_id, payload}],
--   owned: [{key (index of keys.sms(id)), id}]: every SMS this settlement says was sent,
--   owned_ttl_s: how long such a mark lasts at least,
--   (reconciler) proof: the attempt's proof key (CallMeta.proof), found: the receivers it found
--   SMS for, listed_at: Redis ms when it read the in-flight set (after its look at OVH's records),
--   others: [{id, key (index of keys.attempt(id))}] of the in-flight attempts it read then,
--   tracking_ttl_s, tracking: [{key, id, fields: {request_id, receiver, sent_at, ...}}],
--   pull_cap: most SMS pull mode's receipt index holds,
--   campaign: {key (index), service, tag, ttl_s, sent, failed, invalid, unknown, credits} | absent,
--   usage: {key (index), user, tag, sender, sms, credits, unknown, ttl_s, max_values} | absent,
--   resend: ["<entry>", ...]}
-- `spent` is OVH's share plus what the request reserved for receivers whose outcome is unknown
-- (OVH may have debited those: never refunded); the rest of `reserved` is refunded.
-- Returns {"settled", status of each result published...}, {"already", statuses...} (this
-- caller settled it before), {"refused", why} (this caller may not settle it: fenced out,
-- settled by another, gone), {"taken", ovh id} (reconciler: that SMS is another call's proof),
-- or {"wait", call id} (reconciler: an attempt still calling may own an SMS found: settle after it).
local attempt, lease, inflight, reconcile = KEY.attempt, KEY.lease, KEY.inflight, KEY.reconcile
local stats = KEY.stats
local doc = cjson.decode(ARGV[1])

local a = redis.call("hmget", attempt, "state", "owner", "batch_key", "meta", "by", "published")
if a[1] == "settled" and a[5] == doc.token then
    return {"already", unpack(cjson.decode(a[6]))}
end
if not a[1] or a[1] == "settled" or a[1] == "released" or a[1] == "taken" then return {"refused", "gone"} end
if doc.fence == "owner" then
    if a[2] ~= doc.token or a[1] == "ambiguous" then return {"refused", "taken"} end
    if redis.call("get", lease) ~= doc.worker then return {"refused", "nolease"} end
else
    if a[1] ~= "ambiguous" then return {"refused", "not ambiguous"} end
    -- an SMS is proof for one attempt only: none of those found may be another call's
    for _, sms in ipairs(doc.owned) do
        local holder = redis.call("hget", KEYS[sms.key], "call_id")
        if holder and holder ~= doc.call_id then return {"taken", int(sms.id)} end
    end
    -- and an attempt still calling with the same receiver and text may own one: it settles first.
    -- Attempts claimed after the reconciler read the in-flight set (after its look at OVH's
    -- records) cannot have made an SMS it saw; those it read are in `others`.
    if #doc.found > 0 then
        local key_of = {}
        for _, o in ipairs(doc.others) do key_of[o.id] = KEYS[o.key] end
        for _, other in ipairs(redis.call("zrangebyscore", inflight, "-inf", doc.listed_at)) do
            if other ~= doc.call_id then
                if not key_of[other] then return {"wait", other} end
                local o = redis.call("hmget", key_of[other], "state", "meta", "entries")
                if o[1] == "calling" and cjson.decode(o[2]).proof == doc.proof then
                    for _, receiver in ipairs(doc.found) do
                        if string.find(o[3], "|" .. receiver .. "|", 1, true) then return {"wait", other} end
                    end
                end
            end
        end
    end
end
redis.call("del", attempt)
redis.call("zrem", inflight, doc.call_id)
redis.call("zrem", reconcile, doc.call_id)

local now = now_ms()
local finished_at = string.format("%.3f", now / 1000)
local published, released, spent = {}, 0, 0
-- Credits as a JSON number that reads back as the same double.
local function number(x)
    if x == math.floor(x) and math.abs(x) < 1e15 then return int(x) end
    return string.format("%.17g", x)
end

for _, s in ipairs(doc.settlements) do
    local request, outcomes = KEYS[s.req], KEYS[s.outcomes]
    released = released + s.reserved
    spent = spent + s.spent
    local h = redis.call("hmget", request, "skeleton", "sent", "failed", "unknown", "credits", "error", "remaining")
    if h[1] then
        if tonumber(h[7]) - s.n_in_call <= 0 then
            -- the request's last receivers: its result, in a few commands (most requests end in
            -- the one call that holds all their receivers)
            local sent = tonumber(h[2]) + s.n_sent
            local failed = tonumber(h[3]) + s.n_failed
            local unknown = tonumber(h[4]) + s.n_unknown
            local status
            if sent > 0 and failed + unknown == 0 then status = "sent"
            elseif sent > 0 then status = "partial"
            elseif unknown > 0 then status = "unknown"
            elseif failed > 0 then status = "failed"
            else status = "rejected" end
            local fragments = redis.call("lrange", outcomes, 0, -1)
            if s.fragments ~= "" then table.insert(fragments, s.fragments) end
            local result = string.sub(h[1], 1, -2) .. ',"status":"' .. status .. '","credits":'
                .. number(tonumber(h[5]) + s.credits)
                .. ',"receivers":[' .. table.concat(fragments, ",") .. ']'
                .. ',"finished_at":' .. finished_at
            local error = (s.error ~= "" and s.error) or h[6]
            if error then result = result .. ',"error":' .. error end
            result = result .. "}"
            keep_result(KEYS[s.result], KEYS[s.ready], result, doc.result_ttl_s)
            enqueue(KEYS[s.q], KEYS[s.msgs], s.queue, doc.result_actor, "result:" .. s.id .. ":" .. int(now),
                result, now, doc.queue_cap, stats)
            redis.call("del", request, outcomes)
            table.insert(published, status)
        else
            if s.fragments ~= "" then redis.call("rpush", outcomes, s.fragments) end
            if s.error ~= "" then redis.call("hset", request, "error", s.error) end
            redis.call("hincrby", request, "sent", s.n_sent)
            redis.call("hincrby", request, "failed", s.n_failed)
            redis.call("hincrby", request, "unknown", s.n_unknown)
            redis.call("hincrbyfloat", request, "credits", s.credits)
            redis.call("hincrby", request, "remaining", -s.n_in_call)
            redis.call("expire", request, doc.request_ttl_s)
            redis.call("expire", outcomes, doc.request_ttl_s)
        end
    end
end

local quota_left
if doc.quota then
    local quota_key = KEYS[doc.quota]
    local reserved = tonumber(redis.call("hincrbyfloat", quota_key, "reserved", -released))
    if math.abs(reserved) < 1e-9 then  -- float sums of rates: do not leave dust behind
        redis.call("hset", quota_key, "reserved", 0)
        reserved = 0
    end
    local total_spent = tonumber(redis.call("hincrbyfloat", quota_key, "spent", spent))
    local quota = tonumber(redis.call("hget", quota_key, "quota"))
    if quota then quota_left = quota - reserved - total_spent end
end

for _, e in ipairs(doc.events) do
    local payload = e.payload
    if quota_left then
        payload = string.sub(payload, 1, -2) .. ',"quota_left":' .. cjson.encode(quota_left) .. '}'
    end
    enqueue(KEYS[e.q], KEYS[e.msgs], e.queue, doc.result_actor, e.message_id, payload, now, doc.queue_cap, stats)
end

if doc.tracking_ttl_s > 0 then
    -- pull mode (worker/after_send/pull.py): while a poller runs, index each SMS for its receipt
    -- poll, scored by the first poll's time (ms); the index keeps the pull_cap newest (the list
    -- receipts_order holds them in settlement order), the oldest dropped and counted
    local poll_delay_ms = redis.call("hget", KEY.pull, "first_poll_delay_ms")
    for _, t in ipairs(doc.tracking) do
        if poll_delay_ms then
            redis.call("zadd", KEY.receipts, math.floor(tonumber(t.fields.sent_at) * 1000 + tonumber(poll_delay_ms)),
                int(t.id))
            redis.call("rpush", KEY.receipts_order, int(t.id))
        end
        local fields = {}
        for name, value in pairs(t.fields) do
            table.insert(fields, name)
            table.insert(fields, tostring(value))
        end
        redis.call("hset", KEYS[t.key], unpack(fields))
        redis.call("expire", KEYS[t.key], math.max(doc.tracking_ttl_s, doc.owned_ttl_s))
    end
    if poll_delay_ms and #doc.tracking > 0 then
        redis.call("expire", KEY.receipts_order, 86400)
        local over = redis.call("llen", KEY.receipts_order) - doc.pull_cap
        local dropped = 0
        while over > 0 do
            local oldest = redis.call("lpop", KEY.receipts_order, math.min(over, STEP))
            dropped = dropped + redis.call("zrem", KEY.receipts, unpack(oldest))
            over = over - #oldest
        end
        if dropped > 0 then redis.call("hincrby", stats, "dropped:receipts", dropped) end
    end
end
-- every SMS said sent is this call's proof, tracked or not (ids found by a reconciler were
-- checked above; an owner's come from OVH's own answer)
for _, sms in ipairs(doc.owned) do
    own_sms(KEYS[sms.key], doc.call_id, doc.owned_ttl_s)
end

-- campaign statistics of the attempt's tag (lua/_campaign.lua) --------------------------------
if doc.campaign then campaign_settled(KEYS[doc.campaign.key], doc.campaign, published, now) end
-- consumption per day, user, tag and sender (lua/_usage.lua)
if doc.usage then usage_settled(KEYS[doc.usage.key], doc.usage) end

requeue(KEY.buffer, KEY.buffer_meta, KEY.due, KEY.wake, a[3], a[4], doc.resend, now)
redis.call("hset", attempt, "state", "settled", "by", doc.token, "published", cjson.encode(published))
redis.call("expire", attempt, doc.tombstone_ttl_s)
return {"settled", unpack(published)}
