-- peek: which buffer a dispatcher should send next: the most overdue buffer of the highest lane
-- with one due now. Reads only.
--
-- KEY: none fixed; the document names the due set of each lane the dispatcher serves.
-- ARGV[1]: {dues: [key index of each lane's due set, highest priority first]}
-- Returns {lane index (1-based), batch key} or, when nothing is due, {0, next due ms or -1}.
local doc = cjson.decode(ARGV[1])
local now = now_ms()
local next_due = -1
for i, index in ipairs(doc.dues) do
    local top = redis.call("zrange", KEYS[index], 0, 0, "WITHSCORES")
    if top[1] then
        local score = tonumber(top[2])
        if score <= now then
            return {i, top[1]}
        end
        if next_due < 0 or score < next_due then next_due = score end
    end
end
return {0, int(next_due)}
