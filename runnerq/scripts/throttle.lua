-- throttle: a handler said the remote side throttled it (RateLimitedError): the activity
-- goes back to the schedule for `retry_after` with no retry used and no failure counted, and
-- its type is held back for as long on every worker (docs/limits.md).
--
-- KEYS[1] inflight    ZSET  id -> lease deadline
-- KEYS[2] leases      HASH  id -> lease token
-- KEYS[3] scheduled   ZSET  id -> due time (ms)
-- KEYS[4] stats       HASH  counters ("throttled")
-- KEYS[5] notify      LIST  wake-up tokens ('s': a scheduler learns the new due time; '1':
--                           a slot under limits came back)
-- KEYS[6] limit_state HASH  limits' state ("h:<type>", "hk:<key>": held until, ms)
-- KEYS[7] limited     HASH  id -> type of leases taken under limits
-- KEYS[8] config      HASH  queue configuration ("held_until": the latest hold's end, which
--                           sends claims to the limited path until then)
-- KEYS[9] kholds      ZSET  limit key -> its hold's end (ms): counts the keys held back now
--                           (the operator's gauge); ended holds leave it (and their "hk:"
--                           field) here, a bounded number per call
-- KEYS[10] progress   HASH  id -> progress, KEYS[11] events LIST its history
-- (docs/history.md: "claimed" and "throttled" are added), KEYS[12] historied HASH id -> 1
--
-- ARGV[1] id, ARGV[2] lease token, ARGV[3] delay (ms), ARGV[4] what to hold: "h:<type>",
-- "hk:<limit key>" or '' (nothing but this activity),
-- ARGV[5] notify cap
--
-- Returns 1, or 0 when the worker no longer held the lease (nothing changes).

local inflight, leases, scheduled, stats, notify, state, limited, config, kholds =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local id = ARGV[1]
if redis.call('HGET', leases, id) ~= ARGV[2] then
  return 0
end
local now = now_ms()
local until_ms = now + tonumber(ARGV[3])
redis.call('HDEL', leases, id)
redis.call('ZREM', inflight, id)
if limited_token(ARGV[2]) and limits_lib().give_back(state, limited, id) == 1 then
  redis.call('LPUSH', notify, '1') -- a slot came back: a waiting worker may claim (trimmed below)
end
redis.call('ZADD', scheduled, until_ms, id)
redis.call('HINCRBY', stats, 'throttled', 1)
local w, claimed_at = lease_of(ARGV[2])
local throttled = event(now, 'throttled', w,
  string.format(',"at":%d', until_ms) .. (take_progress(KEYS[10], id) or ''))
if claimed_at then
  history_push(KEYS[11], event(claimed_at, 'claimed', w), throttled)
else
  history_push(KEYS[11], throttled)
end
redis.call('HSET', KEYS[12], id, 1)
local hold = ARGV[4]
if hold ~= '' then
  local field = hold
  if tonumber(redis.call('HGET', state, field) or '0') < until_ms then
    redis.call('HSET', state, field, until_ms)
  end
  if tonumber(redis.call('HGET', config, 'held_until') or '0') < until_ms then
    redis.call('HSET', config, 'held_until', until_ms, 'lim', '1')
  end
  redis.call('HINCRBY', state, 't:' .. hold, 1)
  if string.sub(hold, 1, 3) == 'hk:' then
    local ended = redis.call('ZRANGEBYSCORE', kholds, '-inf', now, 'LIMIT', 0, 100)
    for i = 1, #ended do
      redis.call('HDEL', state, 'hk:' .. ended[i])
    end
    if #ended > 0 then
      call_many('ZREM', kholds, ended)
    end
    redis.call('ZADD', kholds, redis.call('HGET', state, field), string.sub(hold, 4))
  end
end
redis.call('LPUSH', notify, 's')
redis.call('LTRIM', notify, 0, tonumber(ARGV[5]) - 1)
return 1
