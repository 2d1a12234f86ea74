-- promote_due: move scheduled activities whose time has come to the ready set.
--
-- KEYS[1] scheduled  ZSET  id -> due time (ms)
-- KEYS[2] ready      ZSET  id -> priority/FIFO score
-- KEYS[3] jobs       HASH  id -> activity record (read for its priority)
-- KEYS[4] seq        STRING counter
-- KEYS[5] notify     LIST  wake-up tokens
-- KEYS[6] schedule_next ZSET schedule name -> its next tick (ms)
-- KEYS[7] kready ZSET, KEYS[8] keyof HASH id -> limit key, KEYS[9] kvt HASH (fair queuing of
-- activities with a limit key: docs/limits.md)
--
-- ARGV[1] how many at most, ARGV[2] notify cap
--
-- Returns {moved, ms until the next scheduled activity is due (-1: none), ms until the next
-- schedule tick (-1: no schedule; 0: one is due, for the caller to fire)}: the scheduler's
-- one round trip when nothing else is to be done.

local scheduled, ready, jobs, seq, notify = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local any_keyed = #due > 0 and redis.call('HLEN', KEYS[8]) > 0
local L -- limits_lib(), made for the first activity with a limit key
for _, id in ipairs(due) do
  redis.call('ZREM', scheduled, id)
  local rank = rank_of(redis.call('HGET', jobs, id))
  local key = any_keyed and redis.call('HGET', KEYS[8], id)
  if key then
    L = L or limits_lib()
    redis.call('ZADD', KEYS[7], L.fair_score(KEYS[9], key, rank), id)
  else
    redis.call('ZADD', ready, ready_score(rank, redis.call('INCR', seq)), id)
  end
end
if #due > 0 then
  local tokens = {}
  for i = 1, math.min(#due, tonumber(ARGV[2])) do
    tokens[i] = '1'
  end
  redis.call('LPUSH', notify, unpack(tokens))
  redis.call('LTRIM', notify, 0, tonumber(ARGV[2]) - 1)
end
local next_due = -1
local first = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')
if #first > 0 then
  next_due = math.max(0, tonumber(first[2]) - now)
end
local next_tick = -1
local tick = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
if #tick > 0 then
  next_tick = math.max(0, tonumber(tick[2]) - now)
end
return { #due, next_due, next_tick }
