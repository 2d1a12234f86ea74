-- release: a worker shutting down hands the leases it still holds back at once, to the
-- front of their priority level, instead of letting them wait for lease expiry.
--
-- KEYS[1] inflight  ZSET  id -> lease deadline (ms)
-- KEYS[2] leases    HASH  id -> lease token
-- KEYS[3] ready     ZSET  id -> priority/FIFO score
-- KEYS[4] jobs      HASH  id -> activity record (read for its priority)
-- KEYS[5] notify    LIST  wake-up tokens
-- KEYS[6] stats     HASH  counters
-- KEYS[7] limit_state HASH limits' state, KEYS[8] limited HASH id -> type (docs/limits.md)
-- KEYS[9] kready ZSET (where activities with a limit key go), KEYS[10] keyof HASH id -> key
-- KEYS[11] progress HASH id -> progress, KEYS[12] historied HASH id -> 1
-- KEYS[13..] the event history of each id of ARGV, in order (docs/history.md: "claimed" and
--            "released" are added)
--
-- ARGV[1] notify cap, then pairs: id, lease token
--
-- Returns how many were handed back (a lease the worker no longer holds is left alone).

local inflight, leases, ready, jobs, notify, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local released = 0
local any_keyed = redis.call('HLEN', KEYS[10]) > 0
local now = now_ms()
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', leases, id) == ARGV[i + 1] then
    redis.call('HSET', KEYS[12], id, 1)
    local history = KEYS[12 + i / 2]
    local w, claimed_at = lease_of(ARGV[i + 1])
    local released_ev = event(now, 'released', w, take_progress(KEYS[11], id))
    if claimed_at then
      history_push(history, event(claimed_at, 'claimed', w), released_ev)
    else
      history_push(history, released_ev)
    end
    redis.call('ZREM', inflight, id)
    redis.call('HDEL', leases, id)
    if limited_token(ARGV[i + 1]) then
      limits_lib().give_back(KEYS[7], KEYS[8], id)
    end
    local to = ready
    if any_keyed and redis.call('HEXISTS', KEYS[10], id) == 1 then
      to = KEYS[9]
    end
    redis.call('ZADD', to, ready_score(rank_of(redis.call('HGET', jobs, id)), 0), id)
    released = released + 1
  end
end
if released > 0 then
  redis.call('HINCRBY', stats, 'released', released)
  local tokens = {}
  for i = 1, math.min(released, tonumber(ARGV[1])) do
    tokens[i] = '1'
  end
  redis.call('LPUSH', notify, unpack(tokens))
  redis.call('LTRIM', notify, 0, tonumber(ARGV[1]) - 1)
end
return released
