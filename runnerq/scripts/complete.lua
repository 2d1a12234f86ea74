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
-- KEYS[14..13+N] result key of each activity, in the order of ARGV[6..]
-- KEYS[14+N..] event history of the activities ARGV[5] lists, in its order (docs/history.md).
--   An activity with a history list (flagged in KEYS[13]) or progress gets "claimed" and
--   "completed" in it, and it expires with the result. Most have neither and cost nothing
--   here: their result document holds their lease token (the claim's worker and time, put
--   there by the worker) and `done` their completion time. The caller names the history key
--   of those it knows have a list (a retry, progress); one that has a list and came without
--   its key is answered 2 and left untouched, to be sent again with it.
--
-- ARGV[1] result TTL (ms)
-- ARGV[2] how many completed records to keep in `done`
-- ARGV[3] channel that announces terminal activities
-- ARGV[4] notify cap
-- ARGV[5] the activities (1-based, comma-separated, ascending) whose history key is given
-- then one value per activity: "id|lease token|result document (JSON)" (ids and tokens hold
-- no '|'; one argument per activity keeps the client's packing cheap)
--
-- Returns one value per activity: 1 when completed, 0 when the worker no longer held the
-- lease (the activity was re-delivered or cancelled, and this completion is dropped), 2 when
-- it has a history list or progress and its history key was not given (nothing done).

local jobs, inflight, leases, stats, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ttl, cap, channel = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local out, completed, gave = {}, 0, 0
local L -- limits_lib(), made for the first lease taken under limits

local total = #ARGV - 5
local hist = {} -- activity number -> its history key, for those given
local given = 0
for n in string.gmatch(ARGV[5], '%d+') do
  given = given + 1
  hist[tonumber(n)] = KEYS[13 + total + given]
end
-- Which of them have a history list or progress: looked up only while any activity of the
-- queue has either (most of the time neither hash has a field).
local ids = {}
local any_flag = redis.call('HLEN', KEYS[13]) > 0
local any_progress = redis.call('HLEN', KEYS[12]) > 0
local flagged, progressed
if any_flag or any_progress then
  for i = 6, #ARGV do
    ids[#ids + 1] = string.sub(ARGV[i], 1, string.find(ARGV[i], '|', 1, true) - 1)
  end
  flagged = any_flag and call_many('HMGET', KEYS[13], ids)
  progressed = any_progress and call_many('HMGET', KEYS[12], ids)
end

local finished, finished_at, seen, finished_n, tokens = {}, {}, {}, {}, {}
for i = 6, #ARGV do
  local packed = ARGV[i]
  local bar1 = string.find(packed, '|', 1, true)
  local bar2 = string.find(packed, '|', bar1 + 1, true)
  local id, token = string.sub(packed, 1, bar1 - 1), string.sub(packed, bar1 + 1, bar2 - 1)
  local n = i - 5
  local needs = (flagged and flagged[n]) or (progressed and progressed[n])
  -- (`seen`: the lease is dropped after the loop, so a repeated id must not pass twice.)
  if seen[id] or redis.call('HGET', leases, id) ~= token then
    out[n] = 0
  elseif needs and not hist[n] then
    out[n] = 2
  else
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
  if flagged or progressed then
    for j = 1, completed do
      local n = finished_n[j]
      local p = progressed and progressed[n] and take_progress(KEYS[12], finished[j])
      if p or (flagged and flagged[n]) then
        local w, claimed_at = lease_of(tokens[j])
        local key = hist[n]
        local done_ev = event(now, 'completed', w, p or nil)
        if claimed_at then
          history_push(key, event(claimed_at, 'claimed', w), done_ev)
        else
          history_push(key, done_ev)
        end
        redis.call('PEXPIRE', key, ttl)
      end
    end
    if any_flag then
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
