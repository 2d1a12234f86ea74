-- schedule_suspend: stop a schedule firing, or let it fire again from its next tick.
--
-- KEYS[1] schedules      HASH  name -> schedule (JSON)
-- KEYS[2] schedule_next  ZSET  name -> next tick (ms)
-- KEYS[3] state          HASH  this schedule's progress
-- KEYS[4] notify         LIST  wake-up tokens
--
-- ARGV[1] name, ARGV[2] 1 to suspend, 0 to resume, ARGV[3] next tick (ms) when resuming,
-- ARGV[4] notify cap, ARGV[5] owner it must have ('' for any)
--
-- Returns {1}, {0} when there is no such schedule, {-1, owner} when another owner has it.
-- Ticks that pass while it is suspended are not run: it resumes at the first tick after the
-- resume.

local name = ARGV[1]
local stored = redis.call('HGET', KEYS[1], name)
if not stored then
  return { 0 }
end
if ARGV[5] ~= '' and schedule_owner(stored) ~= ARGV[5] then
  return { -1, schedule_owner(stored) }
end
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[2], name)
  redis.call('HSET', KEYS[3], 'suspended', 1, 'next_tick', -1)
else
  redis.call('ZADD', KEYS[2], ARGV[3], name)
  redis.call('HSET', KEYS[3], 'suspended', 0, 'next_tick', ARGV[3])
  if redis.call('LPUSH', KEYS[4], 's') > tonumber(ARGV[4]) then
    redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[4]) - 1)
  end
end
return { 1 }
