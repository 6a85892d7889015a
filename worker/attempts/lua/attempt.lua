-- attempt: the owner's transitions of one jobs call's attempt (worker/attempts/lifecycle.py), and
-- OVH's answer. A transition by the owner needs the owner's lease to be alive and to still be the
-- attempt's owner: a worker that lost its lease can neither call nor settle (fencing).
--
-- Every transition carries its try number (`try_number`: the attempt's `tries` after the step):
-- the same step sent again after its reply was lost finds it applied and answers "already", never "refused",
-- so an owner is never fenced out by its own step. Each transition sets `stale_at`: past it,
-- with no step from the owner, the sweep takes the attempt over even while the lease lives.
--
-- KEY: attempt, lease (the caller's), inflight, reconcile, reconcile_wake
-- ARGV[1]: {op, call_id, token, worker, try_number, stale_ms, try_ms, report, owned, owned_ttl_s,
--           reason, grace_ms, deadline_ms}
--   call       claimed -> calling, right before try `try_number` leaves; stale after try_ms + stale_ms
--   uncall     calling -> claimed: try `try_number` surely did not reach OVH; stale after stale_ms
--   ambiguous  calling -> ambiguous (try `try_number` may have been carried out): to the reconcilers.
--              Its receivers count as absent only after the try's own deadline: called_at +
--              try_ms (connect + read timeouts), plus grace_ms; unresolved ones end unknown
--              after deadline_ms.
--   answer     record OVH's answer on a claimed, calling or ambiguous attempt, whoever asks: it is
--              evidence, not a transition (a fenced-out owner still hands it over). The SMS ids it
--              names are marked as this call's (owned: [{key (index of keys.sms(id)), id}]) so no
--              other attempt takes them as proof. Returns the attempt's state ("" when gone).
-- Transitions return "applied", "already" (applied before: its reply was lost), "gone" (no such
-- attempt, or it was settled, released or taken over), "taken" (another owner holds it),
-- "nolease" (the caller's lease expired) or "refused" (the attempt is in another state).
local attempt, lease, inflight, reconcile, reconcile_wake = KEY.attempt, KEY.lease, KEY.inflight, KEY.reconcile,
    KEY.reconcile_wake
local doc = cjson.decode(ARGV[1])
local h = redis.call("hmget", attempt, "state", "owner", "tries", "report", "called_at", "try_ms")
local state, owner, tries = h[1], h[2], tonumber(h[3] or "0")
local live = state == "claimed" or state == "calling" or state == "ambiguous"

if doc.op == "answer" then
    if not live then return "" end
    if not h[4] then
        redis.call("hset", attempt, "report", doc.report)
        for _, sms in ipairs(doc.owned) do
            own_sms(KEYS[sms.key], doc.call_id, doc.owned_ttl_s)
        end
    end
    return state
end

if not live then return "gone" end
if owner ~= doc.token then return "taken" end
if redis.call("get", lease) ~= doc.worker then return "nolease" end
local now = now_ms()
if doc.op == "call" then
    if state == "calling" and tries == doc.try_number then
        -- applied, its reply lost: the try leaves only now, so its deadline counts from now
        redis.call("hset", attempt, "called_at", int(now), "stale_at", int(now + doc.try_ms + doc.stale_ms))
        return "already"
    elseif state == "claimed" and tries == doc.try_number - 1 then
        redis.call("hset", attempt, "state", "calling", "tries", doc.try_number, "called_at", int(now),
            "try_ms", doc.try_ms, "stale_at", int(now + doc.try_ms + doc.stale_ms))
        return "applied"
    end
elseif doc.op == "uncall" then
    if state == "claimed" and tries == doc.try_number then
        redis.call("hset", attempt, "stale_at", int(now + doc.stale_ms))
        return "already"
    elseif state == "calling" and tries == doc.try_number then
        redis.call("hset", attempt, "state", "claimed", "stale_at", int(now + doc.stale_ms))
        return "applied"
    end
elseif doc.op == "ambiguous" then
    if state == "ambiguous" then
        return "already"
    elseif state == "calling" and tries == doc.try_number then
        local absent_after = math.max(tonumber(h[5]) + tonumber(h[6] or "0"), now) + doc.grace_ms
        redis.call("hset", attempt, "state", "ambiguous", "reason", doc.reason, "ambiguous_at", int(now),
            "absent_after", int(absent_after), "deadline", int(now + doc.deadline_ms))
        redis.call("zrem", inflight, doc.call_id)
        redis.call("zadd", reconcile, now, doc.call_id)
        wake(reconcile_wake)
        return "applied"
    end
end
return "refused"
