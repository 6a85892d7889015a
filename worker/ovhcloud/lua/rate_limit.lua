-- rate_limit: the shared token bucket of one OVH consumer key, with lane priority, headroom for the
-- top lane, and 429 backoff.
--
-- Time is the Redis server's (TIME), in integer microseconds, so every replica agrees whatever
-- its own clock says. Tokens are integer micro-tokens (UNIT per call) refilled with math.floor,
-- so rounding can only ever refill less than the rate allows, never more.
--
-- The bucket holds at most burst + headroom calls' worth. A lane allowed the headroom (the top
-- lane) takes a call while the bucket holds one; every other lane only while it holds
-- headroom + one, so it never leaves less than the headroom behind.
--
-- KEY.state: the bucket's hash: tokens (micro-tokens, valid at ts), ts (us; in the future while
--            paused after a 429), rate (calls/s now), seq (calls granted), cut_seq (seq at the
--            last rate decrease)
-- ARGV[1]: {op ("acquire", "rate_limited", "success", "release", "state"), rate (configured,
--   calls/s), burst (calls), headroom (micro-calls), state_ttl_ms, waiters (key indexes: one
--   sorted set per lane, highest priority first: waiter id -> heartbeat expiry, us), then per op:
--   acquire       lane (index in waiters, 1 = highest), waiter (id), waiter_ttl_us,
--                 uses_headroom (true when the lane may take the headroom)
--                 -> {1, now_us, 0, seq} granted, or {0, now_us, wait_us, seq}
--   rate_limited  retry_after_us (-1 if none), seq (the caller's grant seq, -1 if unknown),
--                 floor (rate floor, calls/s), factor (decrease factor)
--                 -> {rate, paused_until_us, decreased}
--   success       increase (additive, calls/s) -> {rate}
--   release       a granted slot that was not used (nothing left to send) goes back -> {tokens}
--   state         -> {now_us, tokens, ts, rate, seq}}
-- Rates are returned as strings: Redis would truncate a Lua number to an integer.
if redis.replicate_commands then
    redis.replicate_commands() -- Redis < 7 needs it to write after TIME; a no-op since 7.0
end

local UNIT = 1000000
local doc = cjson.decode(ARGV[1])
local state = KEY.state
local op = doc.op
local max_rate, burst, state_ttl_ms = doc.rate, doc.burst, doc.state_ttl_ms
local headroom = doc.headroom or 0
local capacity = burst * UNIT + headroom

local clock = redis.call("time")
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local h = redis.call("hmget", state, "tokens", "ts", "rate", "seq", "cut_seq")
local tokens = tonumber(h[1]) or capacity
local ts = tonumber(h[2]) or now
local rate = math.min(tonumber(h[3]) or max_rate, max_rate)
local seq = tonumber(h[4]) or 0
local cut_seq = tonumber(h[5]) or 0

-- Refill up to now; while paused (ts in the future) the tokens are already those due at ts.
if now > ts then
    tokens = math.min(capacity, tokens + math.floor((now - ts) * rate))
    ts = now
end
tokens = math.min(tokens, capacity)

-- redis.call would print a number with 14 digits only: times need 16, rates all 17.
local function int_string(value)
    return string.format("%.0f", value)
end

local function rate_string(value)
    return string.format("%.17g", value)
end

local function save()
    redis.call("hset", state, "tokens", int_string(tokens), "ts", int_string(ts), "rate", rate_string(rate),
        "seq", int_string(seq), "cut_seq", int_string(cut_seq))
    local ttl = state_ttl_ms
    if ts > now then
        ttl = ttl + math.ceil((ts - now) / 1000)
    end
    redis.call("pexpire", state, ttl)
end

-- Microseconds until the bucket holds `need` micro-tokens (at least 1).
local function until_holds(need)
    local wait = 0
    if ts > now then
        wait = ts - now
    end
    if tokens < need then
        wait = wait + math.ceil((need - tokens) / rate)
    end
    return math.max(wait, 1)
end

if op == "acquire" then
    local lane_index, waiter, waiter_ttl = doc.lane, doc.waiter, doc.waiter_ttl_us
    local leave = headroom -- micro-calls this lane must leave in the bucket
    if doc.uses_headroom then
        leave = 0
    end
    local waiters = KEYS[doc.waiters[lane_index]]
    local yield_to_higher = false
    for i = 1, lane_index - 1 do
        local higher = KEYS[doc.waiters[i]]
        redis.call("zremrangebyscore", higher, "-inf", int_string(now))
        if redis.call("zcard", higher) > 0 then
            yield_to_higher = true
            break
        end
    end
    if ts <= now and tokens - leave >= UNIT and not yield_to_higher then
        tokens = tokens - UNIT
        seq = seq + 1
        save()
        redis.call("zrem", waiters, waiter)
        return {1, now, 0, seq}
    end
    -- Not this time: (re)register as a live waiter, so lower lanes yield to this one.
    redis.call("zremrangebyscore", waiters, "-inf", int_string(now))
    redis.call("zadd", waiters, int_string(now + waiter_ttl), waiter)
    redis.call("pexpire", waiters, math.ceil(2 * waiter_ttl / 1000))
    save()
    local need = leave + UNIT
    if yield_to_higher and ts <= now and tokens >= need then
        -- the higher lane takes what is there; look after the next whole call's worth
        need = tokens - (tokens - leave) % UNIT + UNIT
    end
    return {0, now, until_holds(need), seq}
elseif op == "rate_limited" then
    local retry_after, caller_seq = doc.retry_after_us, doc.seq
    local floor, factor = doc.floor, doc.factor
    local decreased = 0
    -- One decrease per round: a 429 for a call granted before the last decrease says nothing new.
    if caller_seq < 0 or caller_seq > cut_seq then
        rate = math.max(math.min(floor, max_rate), rate * factor)
        cut_seq = seq
        decreased = 1
    end
    -- Nothing before Retry-After; the bucket refills at the reduced rate meanwhile, but keeps at
    -- most one call's worth: no burst right after a 429.
    local resume = now
    if retry_after > 0 then
        resume = now + retry_after
    end
    if resume > ts then
        tokens = math.min(UNIT, tokens + math.floor((resume - ts) * rate))
        ts = resume
    else
        tokens = math.min(tokens, UNIT)
    end
    save()
    return {rate_string(rate), ts, decreased}
elseif op == "success" then
    if ts <= now then
        rate = math.min(max_rate, rate + doc.increase)
        save()
    end
    return {rate_string(rate)}
elseif op == "release" then
    tokens = math.min(capacity, tokens + UNIT)
    save()
    return {int_string(tokens)}
elseif op == "state" then
    return {now, tokens, ts, rate_string(rate), seq}
end
return redis.error_reply("rate_limit: unknown op " .. tostring(op))
