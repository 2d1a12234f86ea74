-- heartbeat: extend the leases a worker still holds.
--
-- KEYS[1] inflight  ZSET  id -> lease deadline (ms)
-- KEYS[2] leases    HASH  id -> lease token
--
-- ARGV[1] lease length (ms), then pairs: id, token
--
-- Returns the ids whose lease the worker no longer holds (expired and re-delivered, or
-- cancelled): the worker stops those handlers and does not acknowledge them. A lease only
-- ever moves forward (ZADD GT).

local inflight, leases = KEYS[1], KEYS[2]
local deadline = now_ms() + tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', leases, id) == token then
    redis.call('ZADD', inflight, 'XX', 'GT', deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
