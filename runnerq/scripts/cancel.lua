-- cancel: end an activity that has not finished. A pending or scheduled one is removed; a
-- running one loses its lease (its worker stops the handler and cannot acknowledge it).
--
-- KEYS[1] jobs       HASH  id -> activity record
-- KEYS[2] ready      ZSET
-- KEYS[3] scheduled  ZSET
-- KEYS[4] inflight   ZSET
-- KEYS[5] leases     HASH  id -> lease token
-- KEYS[6] stats      HASH  counters
-- KEYS[7] result     STRING the activity's terminal document (TTL)
-- KEYS[8] redeliveries HASH id -> times its lease expired (cleared)
-- KEYS[9] limit_state HASH limits' state, KEYS[10] limited HASH id -> type (docs/limits.md)
-- KEYS[11] kready ZSET ready activities with a limit key, KEYS[12] keyof HASH id -> limit key
-- KEYS[13] progress HASH id -> progress
-- KEYS[14] events LIST its history, KEYS[15] historied HASH id -> 1 (cleared) (docs/history.md: "claimed" for a running one, and
--          "cancelled", are added; it expires with the result)
--
-- ARGV[1] id, ARGV[2] result document, ARGV[3] result TTL (ms),
-- ARGV[4] channel for terminal activities, ARGV[5] channel that tells workers to stop a handler
--
-- Returns 0 when there is no such unfinished activity, 1 when it was pending,
-- 2 when it was scheduled, 3 when it was running.

local jobs, ready, scheduled, inflight, leases, stats, result =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local id = ARGV[1]
if redis.call('HEXISTS', jobs, id) == 0 then
  return 0
end
local state
local now = now_ms()
local history = {}
if redis.call('ZREM', ready, id) == 1 or redis.call('ZREM', KEYS[11], id) == 1 then
  state = 1
elseif redis.call('ZREM', scheduled, id) == 1 then
  state = 2
else
  redis.call('ZREM', inflight, id)
  local token = redis.call('HGET', leases, id)
  if limited_token(token) then
    limits_lib().give_back(KEYS[9], KEYS[10], id)
  end
  if token then
    local w, claimed_at = lease_of(token)
    if claimed_at then
      history[1] = event(claimed_at, 'claimed', w)
    end
  end
  redis.call('HDEL', leases, id)
  redis.call('PUBLISH', ARGV[5], id)
  state = 3
end
redis.call('HDEL', jobs, id)
redis.call('HDEL', KEYS[8], id)
redis.call('HDEL', KEYS[12], id)
redis.call('SET', result, ARGV[2], 'PX', tonumber(ARGV[3]))
history[#history + 1] = event(now, 'cancelled', nil, take_progress(KEYS[13], id))
history_push(KEYS[14], unpack(history))
redis.call('PEXPIRE', KEYS[14], tonumber(ARGV[3]))
redis.call('HDEL', KEYS[15], id)
redis.call('HINCRBY', stats, 'cancelled', 1)
redis.call('PUBLISH', ARGV[4], id)
return state
