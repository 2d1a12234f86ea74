-- reap: return activities whose lease expired (their worker died or hung) to the front of
-- their priority level.
--
-- KEYS[1] inflight  ZSET  id -> lease deadline (ms)
-- KEYS[2] leases    HASH  id -> lease token
-- KEYS[3] ready     ZSET  id -> priority/FIFO score
-- KEYS[4] jobs      HASH  id -> activity record (read for its priority)
-- KEYS[5] notify    LIST  wake-up tokens
-- KEYS[6] stats     HASH  counters
-- KEYS[7] redeliveries HASH id -> times its lease expired (poison detection)
-- KEYS[8] limit_state HASH limits' state, KEYS[9] limited HASH id -> type (docs/limits.md)
-- KEYS[10] kready ZSET (where activities with a limit key go), KEYS[11] keyof HASH id -> key
-- KEYS[12] progress HASH id -> progress, KEYS[13] historied HASH id -> 1
-- KEYS[14..] the event history of each id of ARGV[3..], in order (docs/history.md:
--            "claimed" and "lease_lost" are added)
--
-- ARGV[1] how many at most, ARGV[2] notify cap, then the ids to reap (none: find them)
--
-- Two steps, because a script names every key it touches in KEYS and the history keys of
-- the expired leases are known only once they are found. With no ids: Returns the ids whose
-- lease expired (at most ARGV[1]), changing nothing. With ids: reaps those whose lease is
-- still expired (the others were acknowledged or extended meanwhile); returns how many.

local inflight, leases, ready, jobs, notify, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local redeliveries = KEYS[7]
local now = now_ms()
if #ARGV == 2 then
  return redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
end
local expired, history = {}, {}
for i = 3, #ARGV do
  local deadline = redis.call('ZSCORE', inflight, ARGV[i])
  if deadline and tonumber(deadline) <= now then
    expired[#expired + 1] = ARGV[i]
    history[ARGV[i]] = KEYS[11 + i]
  end
end
local any_limited = #expired > 0 and redis.call('HLEN', KEYS[9]) > 0
local any_keyed = #expired > 0 and redis.call('HLEN', KEYS[11]) > 0
for _, id in ipairs(expired) do
  redis.call('ZREM', inflight, id)
  local token = redis.call('HGET', leases, id)
  local w, claimed_at
  if token then
    w, claimed_at = lease_of(token)
  end
  local lost = event(now, 'lease_lost', w, take_progress(KEYS[12], id))
  if claimed_at then
    history_push(history[id], event(claimed_at, 'claimed', w), lost)
  else
    history_push(history[id], lost)
  end
  redis.call('HSET', KEYS[13], id, 1)
  redis.call('HDEL', leases, id)
  if any_limited then
    limits_lib().give_back(KEYS[8], KEYS[9], id)
  end
  redis.call('HINCRBY', redeliveries, id, 1)
  local to = ready
  if any_keyed and redis.call('HEXISTS', KEYS[11], id) == 1 then
    to = KEYS[10]
  end
  redis.call('ZADD', to, ready_score(rank_of(redis.call('HGET', jobs, id)), 0), id)
end
if #expired > 0 then
  redis.call('HINCRBY', stats, 'redelivered', #expired)
  redis.call('LPUSH', notify, '1')
  redis.call('LTRIM', notify, 0, tonumber(ARGV[2]) - 1)
end
return #expired
