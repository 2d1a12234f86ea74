-- claim: lease up to N ready activities to one worker, highest priority first, FIFO within
-- a priority, on a queue with no limits (claim_limited.lua takes those).
--
-- KEYS[1] ready     ZSET  id -> priority/FIFO score
-- KEYS[2] inflight  ZSET  id -> lease deadline (ms)
-- KEYS[3] leases    HASH  id -> lease token
-- KEYS[4] jobs      HASH  id -> activity record
-- KEYS[5] config    HASH  queue configuration (paused; lim: set while the queue may need the
--                   limited claim, by whatever sets limits, a hold or a limit key, and
--                   cleared by claim_limited.lua once none of them applies)
-- KEYS[6] notify    LIST  wake-up tokens
-- KEYS[7] seq       STRING counter (lease tokens)
-- KEYS[8] redeliveries HASH id -> times its lease expired
--
-- ARGV[1] how many at most
-- ARGV[2] lease length (ms)
-- ARGV[3] worker id (prefix of the lease token)
-- ARGV[4] '0': no claim time in the token (QueueSettings.claim_history off)
--
-- A lease token is "<worker id>:<seq>@<now ms>" (the time is the claim's, for the history:
-- docs/history.md).
--
-- Returns {-1} while the queue is paused; {-2} when the queue needs the limited claim
-- (nothing claimed: claim with claim_limited.lua). Otherwise {now_ms, token, {id,
-- redeliveries, ...}, 0, id1, record1, ...}: the third element lists the claimed ids whose
-- lease expired before (so the worker can dead-letter poison that keeps killing workers); a
-- claimed id whose record is missing comes with an empty record, so the worker dead-letters
-- it too.

local ready, config, notify, seq = KEYS[1], KEYS[5], KEYS[6], KEYS[7]
local want = tonumber(ARGV[1])

local cfg = redis.call('HMGET', config, 'paused', 'lim')
local paused = cfg[1]
if paused == '1' or paused == 'true' then
  return { -1 }
end
if cfg[2] then
  return { -2 }
end

local now = now_ms()
local popped = redis.call('ZPOPMIN', ready, want)
if #popped == 0 then
  drop_ready_tokens(notify)
  return { now, '', {}, 0 }
end

local token = ARGV[3] .. ':' .. redis.call('INCR', seq)
if ARGV[4] ~= '0' then
  token = token .. string.format('@%d', now)
end
local ids = {}
for i = 1, #popped, 2 do
  ids[#ids + 1] = popped[i]
end
local out = lease_claimed(now, token, ids, 0)
-- Fewer than asked for: the set is empty now (no call needed to tell).
if #ids < want or redis.call('ZCARD', ready) == 0 then
  drop_ready_tokens(notify)
end
return out
