-- progress: store what a running activity's handler reports (ActivityContext.progress), only
-- while its worker still holds the lease (docs/history.md).
--
-- KEYS[1] leases    HASH  id -> lease token
-- KEYS[2] progress  HASH  id -> {"f": fraction, "m": message or null, "t": ms}
--
-- ARGV[1] id, ARGV[2] lease token, ARGV[3] fraction (a number from 0 to 1), ARGV[4] message
-- (a JSON string, or null)
--
-- Returns 1, or 0 when the worker no longer held the lease (nothing is written). The
-- transition that ends the lease moves the value into the activity's history.

if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
local doc = '{"f":' .. ARGV[3] .. ',"m":' .. ARGV[4] .. ',"t":' .. string.format('%d', now_ms()) .. '}'
redis.call('HSET', KEYS[2], ARGV[1], doc)
return 1
