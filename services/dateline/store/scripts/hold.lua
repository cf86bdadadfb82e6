-- Note which of a partition's parked updates one subscription's outbox lacks, so that
-- a redrive adds each of them there once (`refan.lua`).
--
-- The fan-out's group parks an update (the kit's dead letters) when its fan-out kept
-- failing, or behind an earlier parked update of its story. Every entry of the
-- partition before it was fanned out or parked already, so the outbox has it exactly
-- when the subscription's mark is at or past it (an attempt that reached this outbox
-- and failed on another). Later updates of other stories then move the mark past it:
-- a redrive cannot ask the mark, so this is asked now, before the update is parked.
--
-- KEYS[1] the marks (hash: partition -> stream id), KEYS[2] the held updates (hash:
-- position -> 1), KEYS[3] the tombstone.
-- ARGV[1] the subscription's `created`, ARGV[2] the partition; then the stream ids of
-- the updates about to be parked.
-- Returns how many were noted.
-- include: older.lua

if redis.call('GET', KEYS[3]) == ARGV[1] then return 0 end
local mark = redis.call('HGET', KEYS[1], ARGV[2])
local noted = 0
for i = 3, #ARGV do
  if not mark or older(mark, ARGV[i]) then
    redis.call('HSET', KEYS[2], ARGV[2] .. ':' .. ARGV[i], 1)
    noted = noted + 1
  end
end
return noted
