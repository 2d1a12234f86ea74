-- schedule_remove: delete a schedule and its progress (activities it enqueued run on).
--
-- KEYS[1] schedules      HASH  name -> schedule (JSON)
-- KEYS[2] schedule_next  ZSET  name -> next tick (ms)
-- KEYS[3] state          HASH  this schedule's progress
--
-- ARGV[1] name, ARGV[2] owner it must have ('' for any)
--
-- Returns {1} when removed, {0} when there was none, {-1, owner} when another owner has it.

local name = ARGV[1]
local stored = redis.call('HGET', KEYS[1], name)
if not stored then
  return { 0 }
end
if ARGV[2] ~= '' and schedule_owner(stored) ~= ARGV[2] then
  return { -1, schedule_owner(stored) }
end
redis.call('HDEL', KEYS[1], name)
redis.call('ZREM', KEYS[2], name)
redis.call('DEL', KEYS[3])
return { 1 }
