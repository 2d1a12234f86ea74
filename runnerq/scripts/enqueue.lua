-- enqueue: add activities, each either ready now or scheduled for later.
--
-- KEYS[1] jobs       HASH  id -> activity record (JSON)
-- KEYS[2] ready      ZSET  id -> priority/FIFO score
-- KEYS[3] scheduled  ZSET  id -> due time (ms)
-- KEYS[4] notify     LIST  wake-up tokens for idle workers ('1': ready work, 's': schedule changed)
-- KEYS[5] seq        STRING counter for FIFO order and lease tokens
-- KEYS[6] stats      HASH  counters
-- KEYS[7..] idempotency keys (STRING id, with a TTL), referred to by index from ARGV
--
-- ARGV[1] notify cap (tokens kept at most)
-- ARGV[2] idempotency TTL (ms)
-- then one value per activity: "rank:delay:due_at:idem|id|record" where delay is in ms
--   (used when due_at is 0), due_at is epoch ms (0: use delay), idem is the index of the
--   activity's idempotency key in KEYS (0: none), id has no '|', and record is the JSON.
--   (One argument per activity: packing arguments is most of a bulk enqueue's client time.)
--
-- Returns {created, i1, id1, i2, id2, ...}: how many were created, then for each activity
-- whose idempotency key was already taken, its position (1-based) and the earlier id that
-- stands for it. (A short reply: bulk enqueues without keys get one number back.)

local jobs, ready, scheduled, notify, seq, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local notify_cap = tonumber(ARGV[1])
local idem_ttl = tonumber(ARGV[2])
local now = now_ms()
local out = { 0 }
local woke_ready, woke_scheduled, created = 0, 0, 0
local position = 0
-- Sequence numbers for every activity of the call at once (those that end up scheduled or
-- deduplicated leave gaps, which FIFO order does not mind): one call instead of GET + SET.
local next_seq = redis.call('INCRBY', seq, #ARGV - 2) - (#ARGV - 2)
-- Records and ready entries go to Redis in few calls (a call per activity costs more than
-- the work): flushed every FLUSH_AT arguments, well within Lua's unpack limit.
local FLUSH_AT = 2000
local job_args, ready_args = {}, {}
local function flush()
  if #job_args > 0 then
    redis.call('HSET', jobs, unpack(job_args))
    job_args = {}
  end
  if #ready_args > 0 then
    redis.call('ZADD', ready, unpack(ready_args))
    ready_args = {}
  end
end

for i = 3, #ARGV do
  position = position + 1
  local r, d, a, x, id, record = string.match(ARGV[i], '^(%d+):(%d+):(%d+):(%d+)|([^|]+)|(.*)$')
  local rank, delay, due_at, idem_index = tonumber(r), tonumber(d), tonumber(a), tonumber(x)
  local existing = false
  if idem_index > 0 then
    existing = redis.call('GET', KEYS[idem_index])
    if not existing then
      redis.call('SET', KEYS[idem_index], id, 'PX', idem_ttl)
    end
  end
  if existing then
    out[#out + 1] = position
    out[#out + 1] = existing
  else
    job_args[#job_args + 1] = id
    job_args[#job_args + 1] = record
    local due = due_at
    if due == 0 then
      due = now + delay
    end
    if due > now then
      redis.call('ZADD', scheduled, due, id)
      woke_scheduled = 1
    else
      next_seq = next_seq + 1
      ready_args[#ready_args + 1] = ready_score(rank, next_seq)
      ready_args[#ready_args + 1] = id
      woke_ready = woke_ready + 1
    end
    created = created + 1
    if #job_args >= FLUSH_AT then
      flush()
    end
  end
end
flush()
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
