-- Read what the projection has applied since a cursor, for the live index stream.
--
-- KEYS: for each partition in partition order, three keys: the checkpoints hash that
--   holds its checkpoint (field: the partition), the story index that holds its
--   stories, and its log. (A version built before shape 5 names the same checkpoints
--   and index for every partition.)
-- ARGV[1] how many entries to read a partition (256 at most, whatever is asked: the
--   query user calls this, and no call of its may hold the server long); then each
--   partition's cursor (the last stream id seen), in partition order.
-- Returns {pages, stories, index entries}: per partition, its entries past the cursor
--   up to its checkpoint; the stories they name, once each, in the order first seen;
--   and those stories' index entries (false for a story not in the index). One round
--   trip where the checkpoints, the entries and the index entries take two, each
--   behind an fsync under `appendfsync always`. For small pages only: Lua copies every
--   entry in and out (a page of 8,000 held the server 60 ms, where the same reads as
--   commands take 5).
-- include: subject.lua
local n = #KEYS / 3
local count = math.min(tonumber(ARGV[1]), 256)
local pages, stories, seen, index = {}, {}, {}, {}
for p = 1, n do
  local upto = redis.call('HGET', KEYS[3 * p - 2], tostring(p - 1))
  local rows = {}
  -- A commit moves a partition or a few: the others' checkpoints are the cursor's, and
  -- a read of nothing there was most of this script's time (a call costs microseconds).
  if upto and upto ~= ARGV[1 + p] then
    rows = redis.call('XRANGE', KEYS[3 * p], '(' .. ARGV[1 + p], upto, 'COUNT', count)
  end
  pages[p] = rows
  for _, row in ipairs(rows) do
    local story = subject(row[2][2])
    if story and not seen[story] then
      seen[story] = true
      stories[#stories + 1] = story
      index[#stories] = KEYS[3 * p - 1]
    end
  end
end
local entries = {}
for i, story in ipairs(stories) do entries[i] = redis.call('HGET', index[i], story) end
return {pages, stories, entries}
