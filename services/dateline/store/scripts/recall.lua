-- Recall the stored states of a batch's stories, for the projector to fold into.
--
-- KEYS: n story states, then their statements lists, then their merge-key hashes
--   (3n keys, each story's three in the same order).
-- ARGV: none.
-- Returns one reply per story: {} if it has no state, else
--   {state JSON, statements (list of "<ref>":<JSON>), merge keys (flat field, value)}:
--   what a MULTI of 3n reads would return, as atomically, in one command, and only a
--   GET for a story not seen yet.
local n = #KEYS / 3
local out = {}
for i = 1, n do
  local raw = redis.call('GET', KEYS[i])
  if raw then
    local said = redis.call('LRANGE', KEYS[n + i], 0, -1)
    out[i] = {raw, said, redis.call('HGETALL', KEYS[2 * n + i])}
  else
    out[i] = {}
  end
end
return out
