-- claim: lease up to N ready activities to one worker, highest priority first, FIFO within
-- a priority.
--
-- KEYS[1] ready     ZSET  id -> priority/FIFO score
-- KEYS[2] inflight  ZSET  id -> lease deadline (ms)
-- KEYS[3] leases    HASH  id -> lease token
-- KEYS[4] jobs      HASH  id -> activity record
-- KEYS[5] config    HASH  queue configuration (paused)
-- KEYS[6] notify    LIST  wake-up tokens
-- KEYS[7] seq       STRING counter (lease tokens)
-- KEYS[8] redeliveries HASH id -> times its lease expired
--
-- ARGV[1] how many at most
-- ARGV[2] lease length (ms)
-- ARGV[3] worker id (prefix of the lease token)
--
-- Returns {-1} while the queue is paused. Otherwise {now_ms, token, {id, redeliveries, ...},
-- id1, record1, ...}: the third element lists the claimed ids whose lease expired before
-- (so the worker can dead-letter poison that keeps killing workers); a claimed id whose
-- record is missing comes with an empty record, so the worker dead-letters it too.

-- Nothing left to claim: the '1' wake-ups left would only wake workers for nothing. An 's'
-- (the schedule changed) stays for a worker's scheduler.
local function drop_ready_tokens(notify)
  redis.call('LREM', notify, 0, '1')
end

local ready, inflight, leases, jobs, config, notify, seq, redeliveries =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]

local paused = redis.call('HGET', config, 'paused')
if paused == '1' or paused == 'true' then
  return { -1 }
end

local now = now_ms()
local popped = redis.call('ZPOPMIN', ready, tonumber(ARGV[1]))
if #popped == 0 then
  drop_ready_tokens(notify)
  return { now, '', {} }
end

local token = ARGV[3] .. ':' .. redis.call('INCR', seq)
local deadline = now + tonumber(ARGV[2])
local again = {}
local out = { now, token, again }
-- A few calls for the whole batch, not a few per activity.
local ids, deadlines, tokens = {}, {}, {}
for i = 1, #popped, 2 do
  local id = popped[i]
  ids[#ids + 1] = id
  deadlines[#deadlines + 1] = deadline
  deadlines[#deadlines + 1] = id
  tokens[#tokens + 1] = id
  tokens[#tokens + 1] = token
end
if redis.call('HLEN', redeliveries) > 0 then
  local counts = call_many('HMGET', redeliveries, ids)
  for i = 1, #ids do
    if counts[i] then
      again[#again + 1] = ids[i]
      again[#again + 1] = counts[i]
    end
  end
end
call_many('ZADD', inflight, deadlines)
call_many('HSET', leases, tokens)
local records = call_many('HMGET', jobs, ids)
for i = 1, #ids do
  out[#out + 1] = ids[i]
  out[#out + 1] = records[i] or ''
end
-- Fewer than asked for: the set is empty now (no call needed to tell).
if #ids < tonumber(ARGV[1]) or redis.call('ZCARD', ready) == 0 then
  drop_ready_tokens(notify)
end
return out
