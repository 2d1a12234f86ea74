-- schedule_fire: run a schedule's due ticks and move it to its next tick, at most once per
-- tick whoever calls (any number of workers and operators fire the same schedules).
--
-- KEYS[1] jobs           HASH  id -> activity record
-- KEYS[2] ready          ZSET  id -> priority/FIFO score
-- KEYS[3] notify         LIST  wake-up tokens
-- KEYS[4] seq            STRING counter
-- KEYS[5] stats          HASH  counters
-- KEYS[6] schedule_next  ZSET  name -> next tick (ms)
-- KEYS[7] state          HASH  this schedule's progress
--
-- ARGV[1] name, ARGV[2] the next tick the caller read (ms; 'now' for a run outside the ticks,
-- which moves no tick), ARGV[3] the next tick after these (ms), ARGV[4] concurrency ('allow',
-- 'forbid'; 'replace' cancelled the previous run before this call), ARGV[5] ticks missed,
-- ARGV[6] priority rank, ARGV[7] notify cap, ARGV[8] version the records were made for (not checked when no tick is run),
-- then (tick ms, id, record) for each tick to run, oldest first.
--
-- Returns {1, created, skipped} when fired; {0} when the stored next tick is not the one read
-- (someone fired it, or it changed: nothing done); {-1, now} when a tick is not due yet by
-- Redis's clock; {-2} when the schedule changed since the records were made.

local jobs, ready, notify, seq, stats, next_set, state =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local name, expected = ARGV[1], ARGV[2]
local manual = expected == 'now'
if not manual then
  local stored = redis.call('ZSCORE', next_set, name)
  if not stored or tonumber(stored) ~= tonumber(expected) then
    return { 0 }
  end
end
if #ARGV >= 9 and redis.call('HGET', state, 'version') ~= ARGV[8] then
  return { -2 }
end
local now = now_ms()
for i = 9, #ARGV, 3 do
  if tonumber(ARGV[i]) > now then
    return { -1, now }
  end
end
local last = redis.call('HGET', state, 'last_activity_id')
local rank = tonumber(ARGV[6])
local created, skipped, fired = 0, 0, 0
local last_tick
for i = 9, #ARGV, 3 do
  local tick, id, record = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if ARGV[4] == 'forbid' and last and redis.call('HEXISTS', jobs, last) == 1 then
    skipped = skipped + 1
  else
    if redis.call('HSETNX', jobs, id, record) == 1 then
      redis.call('ZADD', ready, ready_score(rank, redis.call('INCR', seq)), id)
      created = created + 1
    end
    fired = fired + 1
    last = id
    last_tick = tick
  end
end
if not manual then
  redis.call('ZADD', next_set, ARGV[3], name)
  redis.call('HSET', state, 'next_tick', ARGV[3])
end
if fired > 0 then
  redis.call('HSET', state, 'last_activity_id', last, 'last_tick', last_tick)
  redis.call('HINCRBY', state, 'fired', fired)
end
if skipped > 0 then
  redis.call('HINCRBY', state, 'skipped', skipped)
end
if tonumber(ARGV[5]) > 0 then
  redis.call('HINCRBY', state, 'missed', tonumber(ARGV[5]))
end
if created > 0 then
  redis.call('HINCRBY', stats, 'enqueued', created)
  local tokens = {}
  for i = 1, math.min(created, tonumber(ARGV[7])) do
    tokens[i] = '1'
  end
  if redis.call('LPUSH', notify, unpack(tokens)) > tonumber(ARGV[7]) then
    redis.call('LTRIM', notify, 0, tonumber(ARGV[7]) - 1)
  end
end
return { 1, created, skipped }
