-- schedule_fire: run schedules' due ticks and move each to its next tick, at most once per
-- tick whoever calls (any number of workers and operators fire the same schedules). One call
-- fires a batch: each schedule in it is checked and fired on its own, as if alone.
--
-- KEYS[1] jobs           HASH  id -> activity record
-- KEYS[2] ready          ZSET  id -> priority/FIFO score
-- KEYS[3] notify         LIST  wake-up tokens
-- KEYS[4] seq            STRING counter
-- KEYS[5] stats          HASH  counters
-- KEYS[6] schedule_next  ZSET  name -> next tick (ms)
-- KEYS[6 + i] state      HASH  the i-th schedule's progress
--
-- ARGV[1] notify cap, then for each schedule, in the order of its state key: name, the next
-- tick the caller read (ms; 'now' for a run outside the ticks, which moves no tick), the next
-- tick after these (ms), concurrency ('allow', 'forbid'; 'replace' cancelled the previous run
-- before this call), ticks missed, priority rank, version the records were made for (not
-- checked when no tick is run), how many ticks (n), then (tick ms, id, record) for each tick
-- to run, oldest first.
--
-- Returns one reply per schedule, in order: {1, created, skipped} when fired; {0} when the
-- stored next tick is not the one read (someone fired it, or it changed: nothing done);
-- {-1, now} when a tick is not due yet by Redis's clock; {-2} when the schedule changed since
-- the records were made (nothing done).

local jobs, ready, notify, seq, stats, next_set =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local cap = tonumber(ARGV[1])
local now = now_ms()
local replies = {}
local created_all = 0

-- One schedule: its state key and the first index of its block in ARGV.
local function fire(state, a)
  local name, expected, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 7])
  local first, stop = a + 8, a + 7 + 3 * n
  local manual = expected == 'now'
  if not manual then
    local stored = redis.call('ZSCORE', next_set, name)
    if not stored or tonumber(stored) ~= tonumber(expected) then
      return { 0 }
    end
  end
  local progress = redis.call('HMGET', state, 'version', 'last_activity_id')
  if n > 0 and progress[1] ~= ARGV[a + 6] then
    return { -2 }
  end
  for i = first, stop, 3 do
    if tonumber(ARGV[i]) > now then
      return { -1, now }
    end
  end
  local forbid = ARGV[a + 3] == 'forbid'
  local last = progress[2]
  local rank = tonumber(ARGV[a + 5])
  local created, skipped, fired = 0, 0, 0
  local last_tick
  for i = first, stop, 3 do
    local tick, id, record = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if forbid and last and redis.call('HEXISTS', jobs, last) == 1 then
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
  local fields = {}
  if not manual then
    redis.call('ZADD', next_set, ARGV[a + 2], name)
    fields = { 'next_tick', ARGV[a + 2] }
  end
  if fired > 0 then
    fields[#fields + 1] = 'last_activity_id'
    fields[#fields + 1] = last
    fields[#fields + 1] = 'last_tick'
    fields[#fields + 1] = last_tick
    redis.call('HINCRBY', state, 'fired', fired)
  end
  if #fields > 0 then
    redis.call('HSET', state, unpack(fields))
  end
  if skipped > 0 then
    redis.call('HINCRBY', state, 'skipped', skipped)
  end
  local missed = tonumber(ARGV[a + 4])
  if missed > 0 then
    redis.call('HINCRBY', state, 'missed', missed)
  end
  created_all = created_all + created
  return { 1, created, skipped }
end

local a = 2
for k = 7, #KEYS do
  replies[#replies + 1] = fire(KEYS[k], a)
  a = a + 8 + 3 * tonumber(ARGV[a + 7])
end

if created_all > 0 then
  redis.call('HINCRBY', stats, 'enqueued', created_all)
  local tokens = {}
  for i = 1, math.min(created_all, cap) do
    tokens[i] = '1'
  end
  if redis.call('LPUSH', notify, unpack(tokens)) > cap then
    redis.call('LTRIM', notify, 0, cap - 1)
  end
end
return replies
