-- prelude: helpers shared by the runnerq scripts. When runnerq loads a script it puts in
-- front of it the helpers the script names (and those these name), in this file's order, so
-- every transition stays in a file of its own and a script run makes no closure it does not
-- use (runnerq/scripts.py). A line "--- name ..." starts the section defining those names.

--- now_ms
-- Milliseconds since the epoch by the Redis server's clock: leases and due times never
-- depend on a worker's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

--- SEQ_SPAN RANKS ready_score
-- Ready-set scores: priority rank in the high part, a FIFO sequence in the low part, so that
-- ZPOPMIN gives strict priority across levels and first-in-first-out inside one level.
local SEQ_SPAN = 281474976710656 -- 2^48
local RANKS = { critical = 0, high = 1, normal = 2, low = 3 }

local function ready_score(rank, seq)
  return rank * SEQ_SPAN + seq
end

--- rank_of
-- The priority rank stored in an activity record; a record that cannot be read ranks
-- as normal, and the worker that claims it sends it to the dead-letter queue.
local function rank_of(record)
  if not record then
    return 2
  end
  local ok, doc = pcall(cjson.decode, record)
  if ok and type(doc) == 'table' then
    local rank = RANKS[doc['priority']]
    if rank then
      return rank
    end
  end
  return 2
end

--- schedule_owner
-- The owner (code, operator, api) of a stored schedule's JSON; one that cannot be read
-- counts as the API's.
local function schedule_owner(stored)
  local ok, doc = pcall(cjson.decode, stored)
  return (ok and type(doc) == 'table' and doc['owner']) or 'api'
end

--- UNPACK_SLICE call_many
-- redis.call(cmd, key, args...) for a list of arguments of any length, in slices that Lua
-- can unpack (an even slice length keeps field/value and score/member pairs together).
-- Returns the replies of the slices, concatenated when they are lists.
local UNPACK_SLICE = 4000
local function call_many(cmd, key, args)
  local n = #args
  if n <= UNPACK_SLICE then
    return redis.call(cmd, key, unpack(args))
  end
  local all = {}
  for i = 1, n, UNPACK_SLICE do
    local reply = redis.call(cmd, key, unpack(args, i, math.min(i + UNPACK_SLICE - 1, n)))
    if type(reply) == 'table' then
      for j = 1, #reply do
        all[#all + 1] = reply[j]
      end
    end
  end
  return all
end

--- limited_token
-- Limits (docs/limits.md): a lease the claim took under limits has a token whose sequence
-- starts with '~' ("<worker id>:~<seq>": the worker id stays as it was, for the operator),
-- and "<type>\t<limit key or ''>" in the `limited` hash; ending it gives the type's and the
-- key's slots back in the limit state hash. Leases taken with no limits cost nothing.
local function limited_token(token)
  return type(token) == 'string' and string.find(token, ':~', 1, true) ~= nil
end

--- limits_lib
-- The helpers below are made on first use (limits_lib()), not by every script run: scripts
-- run on queues with no limits make no closures they do not use.
local function limits_lib()
  local function release_slot(state, field)
    if redis.call('HINCRBY', state, field, -1) <= 0 then
      redis.call('HDEL', state, field)
    end
  end

  -- Returns 1 when the lease of `id` was taken under limits (and its slots are given back),
  -- else 0. `keyof` given: the activity is finished, its limit key is forgotten too.
  local function give_back(state, limited, id, keyof)
    local v = redis.call('HGET', limited, id)
    if not v then
      return 0
    end
    redis.call('HDEL', limited, id)
    local tab = string.find(v, '\t', 1, true)
    local t, k = v, ''
    if tab then
      t, k = string.sub(v, 1, tab - 1), string.sub(v, tab + 1)
    end
    release_slot(state, 'c:' .. t)
    if k ~= '' then
      release_slot(state, 'ck:' .. k)
      if keyof then
        redis.call('HDEL', keyof, id)
      end
    end
    return 1
  end

  -- A slot given back wakes one waiting worker, which claims what the slot now allows.
  local function wake_one(notify, cap)
    redis.call('LPUSH', notify, '1')
    redis.call('LTRIM', notify, 0, cap - 1)
  end

  -- Fair queuing between limit keys (docs/limits.md): each key's activities get consecutive
  -- virtual start times from max(the key's last + 1, the virtual clock), the clock being the
  -- latest virtual time claimed; the keyed ready set is ordered by rank, then virtual time, so
  -- a key with a long backlog and one that just came interleave. `kvt` holds each key's last
  -- time and, under "\tclock" (keys hold no tab), the clock. Returns the next score for `key`.
  local function fair_score(kvt, key, rank)
    local clock = tonumber(redis.call('HGET', kvt, '\tclock') or '0')
    local vt = math.max(tonumber(redis.call('HGET', kvt, key) or '0') + 1, clock)
    redis.call('HSET', kvt, key, vt)
    return ready_score(rank, vt)
  end

  return { give_back = give_back, wake_one = wake_one, fair_score = fair_score }
end

--- drop_ready_tokens
-- Nothing left to claim: the '1' wake-ups left would only wake workers for nothing. An 's'
-- (the schedule changed) stays for a worker's scheduler.
local function drop_ready_tokens(notify)
  redis.call('LREM', notify, 0, '1')
end

--- lease_claimed
-- The claims (claim.lua, claim_limited.lua, whose KEYS[2..4], KEYS[8] and ARGV[2] are
-- alike): lease `ids`, taken out of a ready set already, with `token` for ARGV[2] ms; returns
-- the claim's reply {now, token, {id, redeliveries, ...}, wait, id1, record1, ...}.
local function lease_claimed(now, token, ids, wait)
  local inflight, leases, jobs, redeliveries = KEYS[2], KEYS[3], KEYS[4], KEYS[8]
  local deadline = now + tonumber(ARGV[2])
  local again = {}
  local out = { now, token, again, wait }
  -- A few calls for the whole batch, not a few per activity.
  local deadlines, tokens = {}, {}
  for i = 1, #ids do
    local id = ids[i]
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
  return out
end

--- HISTORY_CAP history_push event lease_of take_progress
-- Per-activity event history (docs/history.md): a LIST of compact JSON events, oldest first,
-- of which the last HISTORY_CAP are kept. `event` makes one: Redis time `t`, kind `e`, the
-- worker `w` (or nil) and `tail`, the rest of the object's fields, each led by a comma
-- (made by the client, which escapes the text in them), or nil.
local HISTORY_CAP = 50

local function history_push(key, ...)
  if redis.call('RPUSH', key, ...) > HISTORY_CAP then
    redis.call('LTRIM', key, -HISTORY_CAP, -1)
  end
end

local function event(t, e, w, tail)
  local head = '{"t":' .. string.format('%d', t) .. ',"e":"' .. e .. '"'
  if w then
    head = head .. ',"w":' .. cjson.encode(w)
  end
  return head .. (tail or '') .. '}'
end

-- The progress `id`'s handler reported (the hash's field is dropped) as a tail for its
-- attempt's last event: ',"p":{...}', or nil. (A lease ends: its progress goes with it.)
local function take_progress(progress, id)
  local p = redis.call('HGET', progress, id)
  if p then
    redis.call('HDEL', progress, id)
    return ',"p":' .. p
  end
  return nil
end

-- The worker id in a lease token ("<worker id>:<seq>@<claim ms>", "<worker id>:~<seq>@<claim
-- ms>" under limits), and when the claim took it (nil for a token from before the history):
-- the transition that ends a lease writes its "claimed" event from it, as the claim cannot
-- name the history keys of activities it has not popped yet.
local function lease_of(token)
  local w, ms = string.match(token, '^(.*):~?%d+@(%d+)$')
  if w then
    return w, tonumber(ms)
  end
  return string.match(token, '^(.*):~?%d+$') or token, nil
end

--- count_minute
-- Per-minute throughput (docs/history.md): field "<epoch minute>:<kind>" counts completed
-- ('c') or failed ('f') attempts. The first count of a minute trims what is older than a day
-- (at most once a minute, and only when the hash holds more than a day's fields).
local function count_minute(minutes, now, kind, n)
  local m = math.floor(now / 60000)
  local kept = 1440
  if redis.call('HINCRBY', minutes, string.format('%d:', m) .. kind, n) == n
    and redis.call('HLEN', minutes) > 2 * kept + 4 then
    local old = {}
    for _, f in ipairs(redis.call('HKEYS', minutes)) do
      local fm = tonumber(string.match(f, '^(%d+):'))
      if not fm or fm <= m - kept then
        old[#old + 1] = f
      end
    end
    if #old > 0 then
      call_many('HDEL', minutes, old)
    end
  end
end
