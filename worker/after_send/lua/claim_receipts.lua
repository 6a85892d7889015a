-- claim_receipts: take up to ARGV[3] SMS whose receipt poll is due (pull mode), and push their
-- next poll out by a lease, so that the pollers of other replicas do not poll them meanwhile.
-- The poller then sets their real next poll, or removes them.
--
-- KEYS[1]  the receipts index (keys.RECEIPTS)
-- ARGV     now_ms, lease_ms, limit
-- Returns the OVH ids claimed.
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = redis.call("zrangebyscore", KEYS[1], "-inf", now, "LIMIT", 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do
    redis.call("zadd", KEYS[1], "XX", now + lease, id)
end
return due
