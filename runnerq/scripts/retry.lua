-- retry: a failed attempt goes back to the schedule with its backoff delay.
--
-- KEYS[1] jobs       HASH  id -> activity record
-- KEYS[2] inflight   ZSET  id -> lease deadline
-- KEYS[3] leases     HASH  id -> lease token
-- KEYS[4] scheduled  ZSET  id -> due time (ms)
-- KEYS[5] stats      HASH  counters
-- KEYS[6] notify     LIST  wake-up tokens (so a scheduler learns the new due time)
-- KEYS[7] limit_state HASH limits' state, KEYS[8] limited HASH id -> type (docs/limits.md)
-- KEYS[9] minutes    HASH  per-minute counts, KEYS[10] progress HASH id -> progress,
-- KEYS[11] events LIST its history, KEYS[12] historied HASH id -> 1 (it has a history list)
-- (docs/history.md: "claimed", "failed" and "retry" are added)
--
-- ARGV[1] id, ARGV[2] lease token, ARGV[3] updated record (retry count, last error),
-- ARGV[4] backoff delay (ms), ARGV[5] notify cap, ARGV[6] the "failed" event's own fields
-- (',"n":<attempt>,"err":"..."')
--
-- Returns 1, or 0 when the worker no longer held the lease (nothing changes).

local jobs, inflight, leases, scheduled, stats, notify =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id = ARGV[1]
if redis.call('HGET', leases, id) ~= ARGV[2] then
  return 0
end
redis.call('HDEL', leases, id)
if limited_token(ARGV[2]) and limits_lib().give_back(KEYS[7], KEYS[8], id) == 1 then
  redis.call('LPUSH', notify, '1')
end
redis.call('ZREM', inflight, id)
redis.call('HSET', jobs, id, ARGV[3])
local now = now_ms()
local at = now + tonumber(ARGV[4])
redis.call('ZADD', scheduled, at, id)
local w, claimed_at = lease_of(ARGV[2])
local failed = event(now, 'failed', w, ARGV[6] .. (take_progress(KEYS[10], id) or ''))
local again = event(now, 'retry', nil, string.format(',"at":%d', at))
if claimed_at then
  history_push(KEYS[11], event(claimed_at, 'claimed', w), failed, again)
else
  history_push(KEYS[11], failed, again)
end
redis.call('HSET', KEYS[12], id, 1)
count_minute(KEYS[9], now, 'f', 1)
redis.call('HINCRBY', stats, 'failed', 1)
redis.call('HINCRBY', stats, 'retried', 1)
redis.call('LPUSH', notify, 's')
redis.call('LTRIM', notify, 0, tonumber(ARGV[5]) - 1)
return 1
