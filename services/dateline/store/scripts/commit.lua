-- Commit a projector's batch: its read-model writes, acknowledgements and checkpoints,
-- in one step, fenced against another writer.
--
-- KEYS: the batch's story state keys; on a cluster, then every other key the commands
--   touch. Declared, they are the keys the server checks before it runs the script:
--   while their slot moves to another node, the script runs where every one of them
--   is, or not at all (TRYAGAIN), rather than failing at the first that has gone, its
--   writes before it made.
-- ARGV: each story's expected state SHA-1 ("" for none), one per key, "*" for a key
--   declared only; then the
--   commands' word counts, a MessagePack array (read once, not a tonumber a command:
--   Lua's tonumber is libc's strtod, 4% of the projector's server instructions); then
--   their words: a small commit's as one MessagePack array (one argument, not one a
--   word: the client's RESP packing made each word a printf and two allocations, 13%
--   of the projector's instructions in its live cycles), a large one's one argument a
--   word (packed, catching up ran 10 to 20% slower, waiting on the server, for a
--   reason not found). A packed commit has exactly one argument after the counts, a
--   commit of words at least two (a command has two words at least). A number reaches
--   its command as the server writes a Lua number, exactly. A command named ADVANCE
--   calls advance() (see advance.lua) with its seven to ten other words. On a store of read
--   models apart from the log (`DATELINE_VIEWS_URL`), CHECKPOINT calls moveto() with
--   its five to eight other words; and EXPECT, which comes before every write, checks that a
--   partition's checkpoint (its two other words, the hash and the partition) is not
--   behind its third, the last the projector saw land: behind, the store lost writes
--   it had answered (a crash under `everysec`), and the commit writes nothing.
-- Returns 0 when written; -1 when an EXPECT failed; else the 1-based index of the
--   first story whose stored state is not the one expected (another writer moved it
--   on). Unless 0, nothing is written.
-- include: advance.lua
for i, key in ipairs(KEYS) do
  local fence = ARGV[i]
  if fence == '*' then break end
  local raw = redis.call('GET', key)
  if (raw and redis.sha1hex(raw) or '') ~= fence then return i end
end
local words, i = ARGV, #KEYS + 2
if #ARGV == #KEYS + 2 then words, i = cmsgpack.unpack(ARGV[#KEYS + 2]), 1 end
for _, n in ipairs(cmsgpack.unpack(ARGV[#KEYS + 1])) do
  local verb = words[i]
  if verb == 'ADVANCE' then
    advance(unpack(words, i + 1, i + n - 1))
  elseif verb == 'CHECKPOINT' then
    moveto(unpack(words, i + 1, i + n - 1))
  elseif verb == 'EXPECT' then
    local at = redis.call('HGET', words[i + 1], words[i + 2])
    if not at or older(at, words[i + 3]) then return -1 end
  else
    redis.call(unpack(words, i, i + n - 1))
  end
  i = i + n
end
return 0
