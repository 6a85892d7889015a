-- claim_receipts: take up to `limit` SMS whose receipt poll is due (pull mode), and push their
-- next poll out by a lease, so that the pollers of other replicas do not poll them meanwhile.
-- The poller then sets their real next poll, or removes them.
--
-- KEY: receipts (the receipts index, keys.RECEIPTS)
-- ARGV[1]: {now_ms, lease_ms, limit}
-- Returns the OVH ids claimed.
local doc = cjson.decode(ARGV[1])
local due = redis.call("zrangebyscore", KEY.receipts, "-inf", doc.now_ms, "LIMIT", 0, doc.limit)
for _, id in ipairs(due) do
    redis.call("zadd", KEY.receipts, "XX", doc.now_ms + doc.lease_ms, id)
end
return due
