-- Commit a projector's batch: its read-model writes, acknowledgements and checkpoints,
-- in one step, fenced against another writer.
--
-- KEYS: the batch's story state keys.
-- ARGV: each story's expected state SHA-1 ("" for none), one per key; then the
--   commands, each as its word count followed by its words. A command named ADVANCE
--   calls advance() (see advance.lua) with its six words.
-- Returns 0 when written; else the 1-based index of the first story whose stored
--   state is not the one expected (another writer moved it on), and nothing is written.
-- include: advance.lua
for i, key in ipairs(KEYS) do
  local raw = redis.call('GET', key)
  if (raw and redis.sha1hex(raw) or '') ~= ARGV[i] then return i end
end
local i = #KEYS + 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  if ARGV[i + 1] == 'ADVANCE' then
    advance(unpack(ARGV, i + 2, i + n))
  else
    redis.call(unpack(ARGV, i + 1, i + n))
  end
  i = i + n + 1
end
return 0
