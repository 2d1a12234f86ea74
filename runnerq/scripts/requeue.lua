-- requeue: send a dead-lettered activity back to the ready set with a fresh retry budget.
--
-- KEYS[1] dead    HASH  id -> dead-letter entry
-- KEYS[2] dlq     ZSET  id -> order dead-lettered
-- KEYS[3] jobs    HASH  id -> activity record
-- KEYS[4] ready   ZSET  id -> priority/FIFO score
-- KEYS[5] seq     STRING counter
-- KEYS[6] notify  LIST  wake-up tokens
-- KEYS[7] stats   HASH  counters
-- KEYS[8] result  STRING the old terminal document, removed so new waiters wait again
-- KEYS[9] redeliveries HASH id -> times its lease expired (reset)
-- KEYS[10] kready ZSET, KEYS[11] keyof HASH id -> limit key, KEYS[12] kvt HASH (docs/limits.md)
-- KEYS[13] config HASH ("keyed": the claims look at the keyed ready set)
-- KEYS[14] events LIST its history (docs/history.md: "requeued" is added, and it lives as
--          long as the activity again), KEYS[15] historied HASH id -> 1
--
-- ARGV[1] id, ARGV[2] record to run, ARGV[3] priority rank, ARGV[4] notify cap,
-- ARGV[5] its limit key ('' for none)
--
-- Returns 1, or 0 when the id is not in the dead-letter queue.

local dead, dlq, jobs, ready, seq, notify, stats, result =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id = ARGV[1]
if redis.call('HDEL', dead, id) == 0 then
  return 0
end
redis.call('ZREM', dlq, id)
redis.call('DEL', result)
redis.call('HDEL', KEYS[9], id)
redis.call('HSET', jobs, id, ARGV[2])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[11], id, ARGV[5])
  redis.call('HSET', KEYS[13], 'keyed', '1', 'lim', '1')
  redis.call('ZADD', KEYS[10], limits_lib().fair_score(KEYS[12], ARGV[5], tonumber(ARGV[3])), id)
else
  redis.call('ZADD', ready, ready_score(tonumber(ARGV[3]), redis.call('INCR', seq)), id)
end
history_push(KEYS[14], event(now_ms(), 'requeued'))
redis.call('PERSIST', KEYS[14])
redis.call('HSET', KEYS[15], id, 1)
redis.call('HINCRBY', stats, 'requeued', 1)
redis.call('LPUSH', notify, '1')
redis.call('LTRIM', notify, 0, tonumber(ARGV[4]) - 1)
return 1
