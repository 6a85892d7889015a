-- campaign_numbers: give each receiver of a campaign to the first row that lists it, so a number
-- listed twice is sent once, across resumed runs too (a row that claimed a number keeps it).
--
-- KEY: numbers (the campaign's numbers hash, keys.campaign_numbers)
-- ARGV[1]: {ttl_s, claims: [[E.164, line], ...]}
-- Returns, for each claim, the line that holds the number (the claim's own when it came first).
local doc = cjson.decode(ARGV[1])
local owners = {}
for i, claim in ipairs(doc.claims) do
    local line = int(claim[2])
    local owner = redis.call("hget", KEY.numbers, claim[1])
    if not owner then
        redis.call("hset", KEY.numbers, claim[1], line)
        owner = line
    end
    owners[i] = tonumber(owner)
end
if #doc.claims > 0 then redis.call("expire", KEY.numbers, doc.ttl_s) end
return owners
