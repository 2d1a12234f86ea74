-- complete: record successful activities and their results in one step.
--
-- KEYS[1] jobs      HASH  id -> activity record
-- KEYS[2] inflight  ZSET  id -> lease deadline
-- KEYS[3] leases    HASH  id -> lease token
-- KEYS[4] stats     HASH  counters
-- KEYS[5] done      ZSET  id -> completion time (ms), capped
-- KEYS[6] redeliveries HASH id -> times its lease expired (cleared)
-- KEYS[7] limit_state HASH  limits' state (slots per type given back, docs/limits.md)
-- KEYS[8] limited   HASH  id -> type of leases taken under limits
-- KEYS[9] notify    LIST  wake-up tokens (one when a slot under limits is given back)
-- KEYS[10] keyof    HASH  id -> limit key (forgotten for those taken under limits)
-- KEYS[11] minutes  HASH  per-minute counts ("<minute>:c")
-- KEYS[12] progress HASH  id -> last progress reported (moved to its history)
-- KEYS[13..12+N] result key of each activity, in the order of ARGV[5..]
-- KEYS[13+N..12+2N] event history of each activity, in the same order (docs/history.md:
--                   "claimed" and "completed" are added to it, and it expires with the
--                   result; an activity with no history yet, which is most, gets none: the
--                   two events go in its result document instead, as "events", which costs
--                   no key)
--
-- ARGV[1] result TTL (ms)
-- ARGV[2] how many completed records to keep in `done`
-- ARGV[3] channel that announces terminal activities
-- ARGV[4] notify cap
-- then one value per activity: "id|lease token|result document (JSON)" (ids and tokens hold
-- no '|'; one argument per activity keeps the client's packing cheap)
--
-- Returns one value per activity: 1 when completed, 0 when the worker no longer held the
-- lease (the activity was re-delivered or cancelled, and this completion is dropped).

local jobs, inflight, leases, stats, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ttl, cap, channel = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local out, completed, gave = {}, 0, 0
local L -- limits_lib(), made for the first lease taken under limits

local finished, finished_at, seen = {}, {}, {}
local total = #ARGV - 4
local any_progress = redis.call('HLEN', KEYS[12]) > 0
local last_token, w, claimed_ev, done_ev
for i = 5, #ARGV do
  local packed = ARGV[i]
  local bar1 = string.find(packed, '|', 1, true)
  local bar2 = string.find(packed, '|', bar1 + 1, true)
  local id, token = string.sub(packed, 1, bar1 - 1), string.sub(packed, bar1 + 1, bar2 - 1)
  local n = i - 4
  -- (`seen`: the lease is dropped after the loop, so a repeated id must not pass twice.)
  if not seen[id] and redis.call('HGET', leases, id) == token then
    seen[id] = true
    -- History: the claim (its time is in the token) and the completion, with the progress
    -- its handler reported last, if any.
    if token ~= last_token then -- (a batch's leases share a token or few)
      local claimed_at
      w, claimed_at = lease_of(token)
      claimed_ev = claimed_at and event(claimed_at, 'claimed', w)
      done_ev = event(now, 'completed', w)
      last_token = token
    end
    local this_ev = done_ev
    local p = any_progress and take_progress(KEYS[12], id)
    if p then
      this_ev = string.sub(done_ev, 1, -2) .. p .. '}'
    end
    local doc = string.sub(packed, bar2 + 1)
    local hist = KEYS[12 + total + n]
    local kept = claimed_ev and redis.call('RPUSHX', hist, claimed_ev, this_ev)
      or redis.call('RPUSHX', hist, this_ev)
    if kept > 0 then
      if kept > HISTORY_CAP then
        redis.call('LTRIM', hist, -HISTORY_CAP, -1)
      end
      redis.call('PEXPIRE', hist, ttl)
    else
      local events = claimed_ev and (claimed_ev .. ',' .. this_ev) or this_ev
      doc = string.sub(doc, 1, -2) .. ',"events":[' .. events .. ']}'
    end
    redis.call('SET', KEYS[12 + n], doc, 'PX', ttl)
    if limited_token(token) then
      L = L or limits_lib()
      gave = gave + L.give_back(KEYS[7], KEYS[8], id, KEYS[10])
    end
    redis.call('PUBLISH', channel, id)
    finished[#finished + 1] = id
    finished_at[#finished_at + 1] = now
    finished_at[#finished_at + 1] = id
    out[n] = 1
  else
    out[n] = 0
  end
end
completed = #finished
if gave > 0 then
  L.wake_one(KEYS[9], tonumber(ARGV[4]))
end

-- The bookkeeping of the whole batch in a few calls. (The results are set and announced
-- above, before this: all of it is one atomic script, so nobody sees the difference.)
if completed > 0 then
  count_minute(KEYS[11], now, 'c', completed)
  call_many('HDEL', leases, finished)
  call_many('ZREM', inflight, finished)
  call_many('HDEL', jobs, finished)
  if redis.call('HLEN', KEYS[6]) > 0 then
    call_many('HDEL', KEYS[6], finished)
  end
  call_many('ZADD', done, finished_at)
end
if completed > 0 then
  redis.call('HINCRBY', stats, 'completed', completed)
  local excess = redis.call('ZCARD', done) - cap
  if excess > 0 then
    redis.call('ZREMRANGEBYRANK', done, 0, excess - 1)
  end
end
return out
