-- enqueue: add activities, each either ready now or scheduled for later.
--
-- KEYS[1] jobs       HASH  id -> activity record (JSON)
-- KEYS[2] ready      ZSET  id -> priority/FIFO score
-- KEYS[3] scheduled  ZSET  id -> due time (ms)
-- KEYS[4] notify     LIST  wake-up tokens for idle workers ('1': ready work, 's': schedule changed)
-- KEYS[5] seq        STRING counter for FIFO order and lease tokens
-- KEYS[6] stats      HASH  counters
-- KEYS[7] kready    ZSET  activities with a limit key, ready: fair between keys
-- KEYS[8] keyof     HASH  id -> limit key
-- KEYS[9] kvt       HASH  limit key -> its last virtual start time (fair queuing)
-- KEYS[10] config   HASH  queue configuration ("keyed": activities with a limit key came)
-- KEYS[11..] idempotency keys (STRING id, with a TTL), one for each keyed activity, in order
--
-- ARGV[1] notify cap (tokens kept at most)
-- ARGV[2] idempotency TTL (ms)
-- then groups of activities that share their options, each one
--   "rank:delay:due_at:keyed[\t<limit key>]", n, id1, record1, ..., idn, recordn
-- where delay is in ms (used when due_at is 0), due_at is epoch ms (0: use delay), keyed is 1
-- when each activity of the group has an idempotency key (the next one in KEYS), and each
-- record is JSON. A bulk enqueue is one group: its records go to HSET straight from ARGV,
-- with no per-activity parsing or copying in Lua.
--
-- Returns {created, i1, id1, i2, id2, ...}: how many were created, then for each activity
-- whose idempotency key was already taken, its position (1-based) and the earlier id that
-- stands for it. (A short reply: bulk enqueues without keys get one number back.)

local jobs, ready, scheduled, notify, seq, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local notify_cap = tonumber(ARGV[1])
local idem_ttl = tonumber(ARGV[2])
local now -- Redis's clock, read only when a group is scheduled (a call less for ready work)
local out = { 0 }
local woke_ready, woke_scheduled, created = 0, 0, 0
local position, key_index = 0, 10
local kready, keyof, kvt = KEYS[7], KEYS[8], KEYS[9]
local L -- limits_lib(), made for the first activity with a limit key

-- Sequence numbers for every activity of the call at once (those that end up scheduled or
-- deduplicated leave gaps, which FIFO order does not mind): one call instead of GET + SET.
local total, g = 0, 3
while g <= #ARGV do
  local n = tonumber(ARGV[g + 1])
  total = total + n
  g = g + 2 + 2 * n
end
local next_seq = redis.call('INCRBY', seq, total) - total

g = 3
while g <= #ARGV do
  local r, d, a, keyed = string.match(ARGV[g], '^(%d+):(%d+):(%d+):([01])$')
  local limit_key = nil
  if not r then -- a group with a limit key (docs/limits.md)
    r, d, a, keyed, limit_key = string.match(ARGV[g], '^(%d+):(%d+):(%d+):([01])\t(.+)$')
  end
  local rank, due, later = tonumber(r), tonumber(a), false
  if due == 0 then
    local delay = tonumber(d)
    if delay > 0 then
      now = now or now_ms()
      due, later = now + delay, true
    end
  else
    now = now or now_ms()
    later = due > now
  end
  local first, last = g + 2, g + 1 + 2 * tonumber(ARGV[g + 1])
  local job_args, index_args, key_args = {}, {}, {}
  for j = first, last, 2 do
    position = position + 1
    local id = ARGV[j]
    local existing = false
    if keyed == '1' then
      key_index = key_index + 1
      existing = redis.call('GET', KEYS[key_index])
      if existing then
        out[#out + 1] = position
        out[#out + 1] = existing
      else
        redis.call('SET', KEYS[key_index], id, 'PX', idem_ttl)
        job_args[#job_args + 1] = id
        job_args[#job_args + 1] = ARGV[j + 1]
      end
    end
    if not existing then
      if limit_key then
        key_args[#key_args + 1] = id
        key_args[#key_args + 1] = limit_key
      end
      if later then
        index_args[#index_args + 1] = due
      elseif limit_key then
        L = L or limits_lib()
        index_args[#index_args + 1] = L.fair_score(kvt, limit_key, rank)
      else
        next_seq = next_seq + 1
        index_args[#index_args + 1] = ready_score(rank, next_seq)
      end
      index_args[#index_args + 1] = id
    end
  end
  if keyed == '1' then
    if #job_args > 0 then
      call_many('HSET', jobs, job_args)
    end
  else
    for s = first, last, UNPACK_SLICE do
      redis.call('HSET', jobs, unpack(ARGV, s, math.min(s + UNPACK_SLICE - 1, last)))
    end
  end
  if #index_args > 0 then
    if #key_args > 0 then
      call_many('HSET', keyof, key_args)
      -- From now on the queue's claims look at the keyed ready set too (claim.lua).
      redis.call('HSET', KEYS[10], 'keyed', '1', 'lim', '1')
    end
    if later then
      call_many('ZADD', scheduled, index_args)
      woke_scheduled = 1
    else
      call_many('ZADD', limit_key and kready or ready, index_args)
      woke_ready = woke_ready + #index_args / 2
    end
    created = created + #index_args / 2
  end
  g = last + 1
end
out[1] = created

-- '1' wakes a worker's dispatcher (ready work); 's' a worker's scheduler (the earliest due
-- time may have changed): a ready enqueue costs no scheduler round trip.
local tokens = math.min(woke_ready + woke_scheduled, notify_cap)
if tokens > 0 then
  local values = {}
  if woke_scheduled > 0 then
    values[1] = 's'
  end
  for i = #values + 1, tokens do
    values[i] = '1'
  end
  if redis.call('LPUSH', notify, unpack(values)) > notify_cap then
    redis.call('LTRIM', notify, 0, notify_cap - 1)
  end
end
if created > 0 then
  redis.call('HINCRBY', stats, 'enqueued', created)
end
return out
