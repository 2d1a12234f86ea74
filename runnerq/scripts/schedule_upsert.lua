-- schedule_upsert: add a schedule, or change it. Its owner (code, operator or api) is kept:
-- a schedule of another owner is not overwritten unless the call says so.
--
-- KEYS[1] schedules      HASH  name -> schedule (JSON)
-- KEYS[2] schedule_next  ZSET  name -> next tick (ms); suspended schedules are not in it
-- KEYS[3] state          HASH  this schedule's progress: next_tick, last_tick,
--                              last_activity_id, fired, skipped, missed, version, suspended
-- KEYS[4] notify         LIST  wake-up tokens ('s': the earliest due time may have changed)
--
-- ARGV[1] name, ARGV[2] schedule JSON, ARGV[3] its owner, ARGV[4] first tick (ms), ARGV[5]
-- suspended (1/0), ARGV[6] version for a new or changed definition, ARGV[7] 1 to take over a
-- schedule of another owner, ARGV[8] notify cap
--
-- Returns {1} when added or changed, {2} when the stored definition is the same (nothing
-- changes: its progress and a suspension made since are kept), {0, owner} when another
-- owner's schedule has that name (nothing changes).

local schedules, next_set, state, notify = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local name, definition, owner = ARGV[1], ARGV[2], ARGV[3]
local stored = redis.call('HGET', schedules, name)
if stored then
  if stored == definition then
    return { 2 }
  end
  local stored_owner = schedule_owner(stored)
  if stored_owner ~= owner and ARGV[7] ~= '1' then
    return { 0, stored_owner }
  end
end
redis.call('HSET', schedules, name, definition)
redis.call('HSET', state, 'version', ARGV[6], 'suspended', ARGV[5])
if ARGV[5] == '1' then
  redis.call('ZREM', next_set, name)
  redis.call('HSET', state, 'next_tick', -1)
else
  redis.call('ZADD', next_set, ARGV[4], name)
  redis.call('HSET', state, 'next_tick', ARGV[4])
  if redis.call('LPUSH', notify, 's') > tonumber(ARGV[8]) then
    redis.call('LTRIM', notify, 0, tonumber(ARGV[8]) - 1)
  end
end
return { 1 }
