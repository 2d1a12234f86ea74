-- purge_dead: empty the dead-letter queue.
--
-- KEYS[1] dead  HASH  id -> dead-letter entry
-- KEYS[2] dlq   ZSET  id -> time dead-lettered
--
-- Returns how many entries were removed.

local count = redis.call('ZCARD', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return count
