-- dead_letter: move a claimed activity to the dead-letter queue and resolve its waiters.
--
-- KEYS[1] jobs      HASH  id -> activity record
-- KEYS[2] inflight  ZSET  id -> lease deadline
-- KEYS[3] leases    HASH  id -> lease token
-- KEYS[4] dead      HASH  id -> dead-letter entry (JSON: record or raw text, error, reason)
-- KEYS[5] dlq       ZSET  id -> order dead-lettered (sequence), capped
-- KEYS[6] stats     HASH  counters
-- KEYS[7] result    STRING the activity's terminal document (TTL)
-- KEYS[8] seq       STRING counter (dead-letter order)
-- KEYS[9] redeliveries HASH id -> times its lease expired (cleared)
-- KEYS[10] limit_state HASH limits' state, KEYS[11] limited HASH id -> type,
-- KEYS[12] notify LIST wake-up tokens, KEYS[13] keyof HASH id -> limit key (docs/limits.md)
-- KEYS[14] minutes HASH per-minute counts, KEYS[15] progress HASH id -> progress,
-- KEYS[16] events LIST its history, KEYS[17] historied HASH id -> 1 (cleared)
-- (docs/history.md: "claimed" and "dead_lettered" are added; it expires after ARGV[10])
--
-- ARGV[1] id, ARGV[2] lease token, ARGV[3] dead-letter entry, ARGV[4] result document,
-- ARGV[5] result TTL (ms), ARGV[6] dead-letter cap, ARGV[7] channel for terminal activities,
-- ARGV[8] notify cap, ARGV[9] the "dead_lettered" event's own fields
-- (',"n":<attempt>,"reason":"...","err":"..."'), ARGV[10] how long its history is kept (ms)
--
-- Returns 1, or 0 when the worker no longer held the lease (nothing changes). When the
-- queue holds more than the cap, the oldest entries are dropped.

local jobs, inflight, leases, dead, dlq, stats, result =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local id = ARGV[1]
if redis.call('HGET', leases, id) ~= ARGV[2] then
  return 0
end
redis.call('HDEL', leases, id)
local L = limited_token(ARGV[2]) and limits_lib()
if L and L.give_back(KEYS[10], KEYS[11], id) == 1 then
  L.wake_one(KEYS[12], tonumber(ARGV[8]))
end
redis.call('HDEL', KEYS[13], id)
redis.call('ZREM', inflight, id)
redis.call('HDEL', jobs, id)
redis.call('HDEL', KEYS[9], id)
redis.call('HSET', dead, id, ARGV[3])
redis.call('ZADD', dlq, redis.call('INCR', KEYS[8]), id)
redis.call('SET', result, ARGV[4], 'PX', tonumber(ARGV[5]))
redis.call('HINCRBY', stats, 'failed', 1)
redis.call('HINCRBY', stats, 'dead_lettered', 1)
local now = now_ms()
local w, claimed_at = lease_of(ARGV[2])
local dead_ev = event(now, 'dead_lettered', w, ARGV[9] .. (take_progress(KEYS[15], id) or ''))
if claimed_at then
  history_push(KEYS[16], event(claimed_at, 'claimed', w), dead_ev)
else
  history_push(KEYS[16], dead_ev)
end
redis.call('PEXPIRE', KEYS[16], tonumber(ARGV[10]))
redis.call('HDEL', KEYS[17], id)
count_minute(KEYS[14], now, 'f', 1)

local excess = redis.call('ZCARD', dlq) - tonumber(ARGV[6])
if excess > 0 then
  local evicted = redis.call('ZRANGE', dlq, 0, excess - 1)
  redis.call('HDEL', dead, unpack(evicted))
  redis.call('ZREMRANGEBYRANK', dlq, 0, excess - 1)
end
redis.call('PUBLISH', ARGV[7], id)
return 1
