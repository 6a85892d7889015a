-- quota_set: set a user's quota and alert settings without touching what it has reserved and
-- spent, and re-arm its alert when the quota left is above the threshold (again).
--
-- KEY: quota (the user's hash), quotas (the set of quota hashes)
-- ARGV[1]: {service, login, mode, quota, threshold, alert_number, ovh_quota, source}
--   mode "config": quota is the user's total allotment ("" for no limit); written only when
--                  source (config:<entry digest>) differs from the entry applied last (field
--                  "config"), so a restart with an unchanged file does not undo a sync from OVH;
--   mode "ovh":    quota is OVH's quotaLeft ("" when OVH holds no quota): the credits already
--                  spent are added back, so quota left = quotaLeft - reserved (reserved credits
--                  are not debited at OVH yet).
--   quota, threshold, alert_number: absent for none; ovh_quota: true when OVH itself holds the quota.
-- Returns 1 when written, 0 when the config entry was already applied.
local h = KEY.quota
local doc = cjson.decode(ARGV[1])
local mode, source = doc.mode, doc.source
if mode == "config" then
    if redis.call("hget", h, "config") == source then
        return 0
    end
    redis.call("hset", h, "config", source)
end
redis.call("sadd", KEY.quotas, h)
redis.call("hsetnx", h, "reserved", 0)
redis.call("hsetnx", h, "spent", 0)
redis.call("hset", h, "service", doc.service, "login", doc.login, "source", source, "ovh_quota", doc.ovh_quota and 1 or 0)
local reserved = tonumber(redis.call("hget", h, "reserved"))
local spent = tonumber(redis.call("hget", h, "spent"))
local quota = doc.quota
if quota == nil then
    redis.call("hdel", h, "quota")
else
    if mode == "ovh" then quota = quota + spent end
    redis.call("hset", h, "quota", string.format("%.17g", quota))
end
if doc.alert_number then redis.call("hset", h, "alert_number", doc.alert_number) else redis.call("hdel", h, "alert_number") end
local threshold = doc.threshold
if threshold == nil or quota == nil then
    redis.call("hdel", h, "threshold", "armed")
else
    redis.call("hset", h, "threshold", string.format("%.17g", threshold))
    -- Armed while the quota left is above the threshold; a user first configured at or below
    -- it is armed too, so its first reservation tells someone.
    if quota - reserved - spent > threshold or redis.call("hexists", h, "armed") == 0 then
        redis.call("hset", h, "armed", 1)
    end
end
return 1
