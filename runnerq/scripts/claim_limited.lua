-- claim_limited: lease up to N ready activities to one worker within the queue's limits
-- (docs/limits.md): by priority, FIFO within a priority for activities with no limit key and
-- fair between keys for the others, skipping what a rate, a concurrency cap or a hold does
-- not let start now. claim.lua sends the worker here ({-2}) while the config's "lim" is set.
--
-- KEYS[1] ready     ZSET  id -> priority/FIFO score (activities with no limit key)
-- KEYS[2] inflight  ZSET  id -> lease deadline (ms)
-- KEYS[3] leases    HASH  id -> lease token
-- KEYS[4] jobs      HASH  id -> activity record
-- KEYS[5] config    HASH  queue configuration (paused, lim, limits, held_until: the end of
--                   the latest hold a handler asked for, written by throttle.lua; keyed: the
--                   queue has had activities with a limit key, written by enqueue.lua and
--                   requeue.lua)
-- KEYS[6] notify    LIST  wake-up tokens
-- KEYS[7] seq       STRING counter (lease tokens)
-- KEYS[8] redeliveries HASH id -> times its lease expired
-- KEYS[9] limit_state HASH token buckets ("b:q", "b:t:<type>": "tokens:ms"), leases per type
--                     ("c:<type>"), holds ("h:<type>": until ms), throttled counts ("t:...")
-- KEYS[10] limited  HASH  id -> "<type>\t<limit key>", for leases taken by the limited path
-- KEYS[11] kready   ZSET  ready activities with a limit key: rank, then virtual start time
-- KEYS[12] keyof    HASH  id -> limit key
-- KEYS[13] kvt      HASH  "\tclock": the latest virtual time claimed (fair queuing)
--
-- ARGV as claim.lua's.
--
-- Returns {-1} while the queue is paused. Otherwise claim.lua's reply, whose fourth element
-- (wait_ms) is 0, or (limits held work back) how long until a rate's next token: claim again
-- then; or -1, with nothing claimed, when no limit, hold or unfinished activity with a limit
-- key is left: "lim" is cleared and the worker claims with claim.lua again.
-- Leases taken here have tokens "<worker id>:~<seq>@<now ms>" (the transitions that end a
-- lease give back its type's and key's slots for those only).

local ready, inflight, jobs, config, notify, seq =
  KEYS[1], KEYS[2], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local state, limited = KEYS[9], KEYS[10]
local kready, keyof, kvt = KEYS[11], KEYS[12], KEYS[13]
local want = tonumber(ARGV[1])

-- -- the limited path -------------------------------------------------------------------

-- The limited path: its helpers are made only when it runs (the plain path makes no
-- closures it does not use).
local function limited_claim(lim, now, held_until)
  -- How many activities the limited path looks at, at most, per claim (docs/limits.md).
  local SCAN = 200

  -- A token bucket: {tokens, field} refilled up to `now` at rate.limit per rate.period.
  local function bucket(field, rate, now)
    local stored = redis.call('HGET', state, field)
    local burst = tonumber(rate['burst']) or tonumber(rate['limit'])
    local per_ms = tonumber(rate['limit']) / (tonumber(rate['period']) * 1000)
    local tokens, at = burst, now
    if stored then
      local t, a = string.match(stored, '^([^:]+):(%d+)$')
      if t then
        tokens, at = tonumber(t), tonumber(a)
        tokens = math.min(burst, tokens + math.max(0, now - at) * per_ms)
      end
    end
    return { tokens = tokens, field = field, per_ms = per_ms, burst = burst }
  end

  -- A bucket that is full again is forgotten (what is not stored reads as full): the state
  -- hash does not keep a field for every key ever seen.
  local function save(b, now, used)
    if b.tokens - used >= b.burst then
      redis.call('HDEL', state, b.field)
    else
      redis.call('HSET', state, b.field, string.format('%.6f', b.tokens - used) .. ':' .. now)
    end
  end

  -- ms until bucket b holds one token more than `used`.
  local function refill_wait(b, used)
    local missing = used + 1 - b.tokens
    if missing <= 0 then
      return 0
    end
    return math.ceil(missing / b.per_ms)
  end

  -- The activity type in a record: read from its start (runnerq writes "id" then "type"),
  -- decoded in full only when that does not match.
  local function type_of(record)
    if not record then
      return ''
    end
    local t = string.match(record, '^{"id":"[^"\\]*","type":"([^"\\]*)"')
    if t then
      return t
    end
    local ok, doc = pcall(cjson.decode, record)
    if ok and type(doc) == 'table' and type(doc['type']) == 'string' then
      return doc['type']
    end
    return ''
  end

  -- The candidates of a scan, one at a time, in the order a claim takes them: by priority;
  -- within a level, one from the ready set and one from the keyed ready set in turn (each in
  -- its own order: FIFO, and fair between keys). Each set is read in chunks, records (and
  -- limit keys) with them, only as far as the claim goes: usually the first chunk, when most
  -- candidates are allowed; at most SCAN of each set.
  local function source(key, is_keyed, count, chunk)
    return {
      key = key,
      keyed = is_keyed,
      more = count > 0,
      offset = 0,
      chunk = chunk,
      items = {},
      pos = 1,
      recs = {},
      keys = {},
    }
  end

  -- Reads src's next chunk when the current one is used up; false when nothing is left.
  local function ready_item(src)
    if src.pos <= #src.items then
      return true
    end
    if not src.more then
      return false
    end
    local n = math.min(src.chunk, SCAN - src.offset)
    local got = redis.call('ZRANGE', src.key, src.offset, src.offset + n - 1, 'WITHSCORES')
    src.offset = src.offset + n
    src.more = #got == 2 * n and src.offset < SCAN
    src.items, src.pos = got, 1
    if #got == 0 then
      return false
    end
    local chunk_ids = {}
    for i = 1, #got, 2 do
      chunk_ids[#chunk_ids + 1] = got[i]
    end
    src.recs = call_many('HMGET', jobs, chunk_ids)
    src.keys = src.keyed and call_many('HMGET', keyof, chunk_ids) or {}
    return true
  end

  local turn = false
  -- The next candidate {id, score, keyed, record, limit key} of sources a and b, or nil.
  local function next_candidate(a, b)
    local has_a, has_b = ready_item(a), ready_item(b)
    if not has_a and not has_b then
      return nil
    end
    local src
    if not has_a then
      src = b
    elseif not has_b then
      src = a
    else
      local ra = math.floor(tonumber(a.items[a.pos + 1]) / SEQ_SPAN)
      local rb = math.floor(tonumber(b.items[b.pos + 1]) / SEQ_SPAN)
      if ra ~= rb then
        src = (rb < ra) and b or a
      else
        src = turn and b or a
        turn = not turn
      end
    end
    local p = src.pos
    local n = (p + 1) / 2
    src.pos = p + 2
    return { src.items[p], tonumber(src.items[p + 1]), src.keyed, src.recs[n], src.keys[n] or '' }
  end

  local function min_wait(wait, w)
    if w <= 0 then
      return wait
    end
    return (wait == 0) and w or math.min(wait, w)
  end

  local throttled = {}
  local allowed = want
  local wait = 0
  local pending = redis.call('ZCARD', ready)
  local kpending = redis.call('ZCARD', kready)
  if pending + kpending == 0 then
    return nil
  end
  local cap = tonumber(lim['concurrency'])
  if cap then
    allowed = math.min(allowed, cap - redis.call('ZCARD', inflight))
  end
  local qb
  if type(lim['rate']) == 'table' then
    qb = bucket('b:q', lim['rate'], now)
    if math.floor(qb.tokens) < allowed then
      allowed = math.floor(qb.tokens)
      wait = refill_wait(qb, math.max(allowed, 0))
    end
  end
  if allowed < math.min(want, pending + kpending) then
    throttled[#throttled + 1] = 't:q'
  end
  local types = lim['types']
  if type(types) ~= 'table' then
    types = {}
  end
  local klim = lim['keys']
  if type(klim) ~= 'table' then
    klim = {}
  end
  local ids, of_type, of_key, taken, ktaken = {}, {}, {}, {}, {}
  if allowed > 0 then
    if kpending == 0 and next(types) == nil and held_until <= now then
      local popped = redis.call('ZPOPMIN', ready, allowed)
      local recs = {}
      for i = 1, #popped, 2 do
        ids[#ids + 1] = popped[i]
      end
      if #ids > 0 then
        recs = call_many('HMGET', jobs, ids)
      end
      for i = 1, #ids do
        local t = type_of(recs[i])
        of_type[i] = t
        of_key[i] = ''
        taken[t] = (taken[t] or 0) + 1
      end
    else
      local seen, kseen = {}, {} -- type -> its state, key -> its state, read once a claim
      local chunk = math.min(SCAN, math.max(16, 2 * allowed))
      local plain = source(ready, false, pending, chunk)
      local keyed = source(kready, true, kpending, chunk)
      local from_ready, from_kready = {}, {}
      local clock = nil
      while #ids < allowed do
        local c = next_candidate(plain, keyed)
        if not c then
          break
        end
        local id = c[1]
        local t = type_of(c[4])
        local s = seen[t]
        if not s then
          local tl = types[t]
          s = { tl = type(tl) == 'table' and tl or {} }
          local h = redis.call('HGET', state, 'h:' .. t)
          s.held = h and tonumber(h) > now
          if s.held then
            wait = min_wait(wait, tonumber(h) - now)
          end
          if s.tl['concurrency'] then
            s.running = math.max(0, tonumber(redis.call('HGET', state, 'c:' .. t) or '0'))
          end
          if type(s.tl['rate']) == 'table' then
            s.b = bucket('b:t:' .. t, s.tl['rate'], now)
          end
          seen[t] = s
        end
        local used = taken[t] or 0
        local ok = not s.held
        if ok and s.running and s.running + used >= tonumber(s.tl['concurrency']) then
          ok = false
        end
        if ok and s.b and s.b.tokens - used < 1 then
          ok = false
          wait = min_wait(wait, refill_wait(s.b, used))
        end
        if not ok then
          if not s.counted then
            s.counted = true
            throttled[#throttled + 1] = 't:t:' .. t
          end
        end
        local k = c[5]
        local kused = 0
        local key_held = held_until > now
        if ok and k ~= '' and (klim['concurrency'] or type(klim['rate']) == 'table' or key_held) then
          local ks = kseen[k]
          if not ks then
            ks = {}
            if key_held then
              local h = redis.call('HGET', state, 'hk:' .. k)
              ks.held = h and tonumber(h) > now
              if ks.held then
                wait = min_wait(wait, tonumber(h) - now)
              end
            end
            if klim['concurrency'] then
              ks.running = math.max(0, tonumber(redis.call('HGET', state, 'ck:' .. k) or '0'))
            end
            if type(klim['rate']) == 'table' then
              ks.b = bucket('b:k:' .. k, klim['rate'], now)
            end
            kseen[k] = ks
          end
          kused = ktaken[k] or 0
          if ks.held then
            ok = false
          end
          if ok and ks.running and ks.running + kused >= tonumber(klim['concurrency']) then
            ok = false
          end
          if ok and ks.b and ks.b.tokens - kused < 1 then
            ok = false
            wait = min_wait(wait, refill_wait(ks.b, kused))
          end
          if not ok and not ks.counted then
            ks.counted = true
            throttled[#throttled + 1] = 't:k:' .. k
          end
        end
        if ok then
          ids[#ids + 1] = id
          of_type[#ids] = t
          of_key[#ids] = k
          taken[t] = used + 1
          if c[3] then
            from_kready[#from_kready + 1] = id
            if k ~= '' then
              ktaken[k] = kused + 1
            end
            local vt = c[2] % SEQ_SPAN
            clock = clock and math.max(clock, vt) or vt
          else
            from_ready[#from_ready + 1] = id
          end
        end
      end
      if #from_ready > 0 then
        call_many('ZREM', ready, from_ready)
      end
      if #from_kready > 0 then
        call_many('ZREM', kready, from_kready)
      end
      if clock and clock > tonumber(redis.call('HGET', kvt, '\tclock') or '0') then
        redis.call('HSET', kvt, '\tclock', clock)
      end
      for t, s in pairs(seen) do
        if s.b then
          save(s.b, now, taken[t] or 0)
        end
      end
      for k, ks in pairs(kseen) do
        if ks.b then
          save(ks.b, now, ktaken[k] or 0)
        end
      end
    end
  end
  if qb then
    save(qb, now, #ids)
  end
  for i = 1, #throttled do
    redis.call('HINCRBY', state, throttled[i], 1)
  end
  if #ids == 0 then
    -- Held back: no wake-up left for it. The worker claims again after wait_ms (a rate's
    -- next token, a hold's end), or when a lease ends and gives a slot back (its wake-up).
    drop_ready_tokens(notify)
    return { now, '', {}, wait }
  end
  local token = ARGV[3] .. ':~' .. redis.call('INCR', seq)
  if ARGV[4] ~= '0' then
    token = token .. string.format('@%d', now)
  end
  for t, n in pairs(taken) do
    redis.call('HINCRBY', state, 'c:' .. t, n)
  end
  for k, n in pairs(ktaken) do
    redis.call('HINCRBY', state, 'ck:' .. k, n)
  end
  local types_of = {}
  for i = 1, #ids do
    types_of[#types_of + 1] = ids[i]
    types_of[#types_of + 1] = of_type[i] .. '\t' .. of_key[i]
  end
  call_many('HSET', limited, types_of)
  if #throttled > 0 then
    drop_ready_tokens(notify)
  end
  return lease_claimed(now, token, ids, wait)
end

-- -- the claim ----------------------------------------------------------------------------

local cfg = redis.call('HMGET', config, 'paused', 'limits', 'held_until', 'keyed')
local paused = cfg[1]
if paused == '1' or paused == 'true' then
  return { -1 }
end

local now = now_ms()
local limits, held_until, keyed = cfg[2], tonumber(cfg[3] or '0') or 0, cfg[4]
if not limits and held_until <= now and (not keyed or redis.call('HLEN', keyof) == 0) then
  -- No limits, no hold, and no unfinished activity with a limit key left: claim.lua again.
  redis.call('HDEL', config, 'lim', 'keyed')
  return { now, '', {}, -1 }
end
local ok, lim = true, {}
if limits then
  ok, lim = pcall(cjson.decode, limits)
end
if not ok or type(lim) ~= 'table' then
  lim = {} -- limits that are not JSON (written by hand): claimed as if there were none
end
local out = limited_claim(lim, now, held_until)
if out then
  return out
end
drop_ready_tokens(notify)
return { now, '', {}, 0 }
