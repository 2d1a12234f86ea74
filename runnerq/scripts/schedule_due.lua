-- schedule_due: the schedules whose next tick has come, by Redis's clock (reads only).
--
-- KEYS[1] schedules      HASH  name -> schedule (JSON)
-- KEYS[2] schedule_next  ZSET  name -> next tick (ms)
--
-- ARGV[1] how many at most
--
-- Returns {now (ms), ms until the first tick not returned (-1: none), name1, tick1, json1, ...}.

local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
local out = { now, -1 }
for i = 1, #due, 2 do
  out[#out + 1] = due[i]
  out[#out + 1] = due[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[1], due[i]) or ''
end
local later = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if #later > 0 then
  out[2] = tonumber(later[2]) - now
end
return out
