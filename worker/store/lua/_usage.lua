-- Consumption per SMS account and day (keys.usage), kept by the worker itself so that
-- `sms-worker usage` can re-invoice a month per user, tag or sender without reading every SMS
-- back from OVH. Prepended to settle.lua after _common.lua and _campaign.lua
-- (worker/store/scripts.py: SETTLE_PRELUDE); worker/accounting/usage.py writes the document and
-- reads the hash. Fields, for each dimension (user, tag, sender) and value (an API user's login,
-- a tag, a sender; "" for none: the account itself, no tag, OVH's short number):
--   sms|<dimension>|<value>       SMS OVH accepted (one per receiver)
--   credits|<dimension>|<value>   OVH's credits for them
--   unknown|<dimension>|<value>   SMS whose outcome stayed unknown (OVH may have sent and billed them)
--   values|<dimension>            how many values of the dimension the hash counts apart
-- Past `max_values` values in a day, further values are counted together under
-- `<metric>|<dimension>` (no third part): the hash stays bounded whatever the tags are.

local USAGE_DIMENSIONS = { "user", "tag", "sender" }

-- One settlement (settle.lua, in the step that settles the attempt, so that a settlement retried
-- after a lost reply, which finds the attempt settled, counts nothing again).
-- u: {user, tag, sender (strings), sms, unknown (counts), credits, ttl_s, max_values}
local function usage_settled(key, u)
    if not (u.ttl_s and u.ttl_s > 0) then return end
    for _, dimension in ipairs(USAGE_DIMENSIONS) do
        local suffix = "|" .. dimension .. "|" .. u[dimension]
        if redis.call("hexists", key, "sms" .. suffix) == 0 then
            if tonumber(redis.call("hget", key, "values|" .. dimension) or 0) >= u.max_values then
                suffix = "|" .. dimension
            else
                redis.call("hincrby", key, "values|" .. dimension, 1)
            end
        end
        redis.call("hincrby", key, "sms" .. suffix, u.sms)
        if u.credits ~= 0 then redis.call("hincrbyfloat", key, "credits" .. suffix, u.credits) end
        if u.unknown > 0 then redis.call("hincrby", key, "unknown" .. suffix, u.unknown) end
    end
    redis.call("expire", key, u.ttl_s)
end
