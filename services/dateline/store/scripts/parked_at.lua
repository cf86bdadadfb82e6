-- Which story the entry at a position names, and where that story is parked.
--
-- KEYS[1] a partition's log, KEYS[2] the projection's parked stories (none on a
--   cluster, where they are in another slot: the caller reads them itself).
-- ARGV[1] a stream id of that partition.
-- Returns {story, the entry that parked it (false if none)}; false if there is no
--   entry at that id or it names no story. One round trip, for the few reads that
--   wait for a position.
-- include: subject.lua
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return false end
local story = subject(found[1][2][2])
if not story then return false end
if #KEYS == 1 then return {story, false} end
return {story, redis.call('HGET', KEYS[2], story)}
