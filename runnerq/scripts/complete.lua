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
-- KEYS[13] history  HASH  id -> 1 for unfinished activities that have a history list
-- KEYS[14..13+N] result key of each activity, in the order of ARGV[5..]
-- KEYS[14+N..13+2N] event history of each activity, in the same order (docs/history.md).
--   An activity with a history list (flagged in KEYS[13]) or progress gets "claimed" and
--   "completed" in it, and it expires with the result. Most have neither and cost nothing
--   here: their result document holds their lease token (the claim's worker and time, put
--   there by the worker) and `done` their completion time.
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

local finished, finished_at, seen, finished_n, tokens = {}, {}, {}, {}, {}
local total = #ARGV - 4
for i = 5, #ARGV do
  local packed = ARGV[i]
  local bar1 = string.find(packed, '|', 1, true)
  local bar2 = string.find(packed, '|', bar1 + 1, true)
  local id, token = string.sub(packed, 1, bar1 - 1), string.sub(packed, bar1 + 1, bar2 - 1)
  local n = i - 4
  -- (`seen`: the lease is dropped after the loop, so a repeated id must not pass twice.)
  if not seen[id] and redis.call('HGET', leases, id) == token then
    seen[id] = true
    redis.call('SET', KEYS[13 + n], string.sub(packed, bar2 + 1), 'PX', ttl)
    if limited_token(token) then
      L = L or limits_lib()
      gave = gave + L.give_back(KEYS[7], KEYS[8], id, KEYS[10])
    end
    redis.call('PUBLISH', channel, id)
    finished[#finished + 1] = id
    finished_n[#finished_n + 1] = n
    tokens[#tokens + 1] = token
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
  -- History, for the few with a list or progress: "claimed" (from the token) and
  -- "completed", with the progress the handler reported last.
  local flags = redis.call('HLEN', KEYS[13]) > 0 and call_many('HMGET', KEYS[13], finished)
  local any_progress = redis.call('HLEN', KEYS[12]) > 0
  if flags or any_progress then
    for j = 1, completed do
      local p = any_progress and take_progress(KEYS[12], finished[j])
      if p or (flags and flags[j]) then
        local w, claimed_at = lease_of(tokens[j])
        local hist = KEYS[13 + total + finished_n[j]]
        local done_ev = event(now, 'completed', w, p or nil)
        if claimed_at then
          history_push(hist, event(claimed_at, 'claimed', w), done_ev)
        else
          history_push(hist, done_ev)
        end
        redis.call('PEXPIRE', hist, ttl)
      end
    end
    if flags then
      call_many('HDEL', KEYS[13], finished)
    end
  end
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
