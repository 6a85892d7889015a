-- quota_set: set a user's quota and alert settings without touching what it has reserved and
-- spent, and re-arm its alert when the quota left is above the threshold (again).
--
-- KEYS[1]  the user's quota hash        KEYS[2]  the set of quota hashes
-- ARGV: service, login, mode, quota, threshold, alert_number, ovh_quota, source
--   mode "config": quota is the user's total allotment ("" for no limit); written only when
--                  source (config:<entry digest>) differs from the entry applied last (field
--                  "config"), so a restart with an unchanged file does not undo a sync from OVH;
--   mode "ovh":    quota is OVH's quotaLeft ("" when OVH holds no quota): the credits already
--                  spent are added back, so quota left = quotaLeft - reserved (reserved credits
--                  are not debited at OVH yet).
--   threshold, alert_number: "" for none; ovh_quota: "1" when OVH itself holds the quota.
-- Returns 1 when written, 0 when the config entry was already applied.
local h = KEYS[1]
local mode, source = ARGV[3], ARGV[8]
if mode == "config" then
    if redis.call("hget", h, "config") == source then
        return 0
    end
    redis.call("hset", h, "config", source)
end
redis.call("sadd", KEYS[2], h)
redis.call("hsetnx", h, "reserved", 0)
redis.call("hsetnx", h, "spent", 0)
redis.call("hset", h, "service", ARGV[1], "login", ARGV[2], "source", source, "ovh_quota", ARGV[7])
local reserved = tonumber(redis.call("hget", h, "reserved"))
local spent = tonumber(redis.call("hget", h, "spent"))
local quota = tonumber(ARGV[4])
if quota == nil then
    redis.call("hdel", h, "quota")
else
    if mode == "ovh" then quota = quota + spent end
    redis.call("hset", h, "quota", string.format("%.17g", quota))
end
if ARGV[6] == "" then redis.call("hdel", h, "alert_number") else redis.call("hset", h, "alert_number", ARGV[6]) end
local threshold = tonumber(ARGV[5])
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
