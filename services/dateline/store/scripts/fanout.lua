-- Put a batch of a partition's updates in one subscription's outbox, each one once.
--
-- The fan-out (`deliver/fanout.py`) calls it for every subscription a batch has updates
-- for, then acknowledges the batch in the log. On a cluster those are other slots, so
-- no transaction holds both: the subscription's mark (the last log entry of the
-- partition fanned out to it) makes a batch handled again after a crash between the
-- two add nothing twice. A removed subscription (its tombstone holds the `created` of
-- the settings the fan-out read) gets nothing: its outbox is not made anew.
--
-- KEYS[1] the outbox, KEYS[2] the marks (hash: partition -> stream id), KEYS[3] the
-- tombstone.
-- ARGV[1] the subscription's `created`, ARGV[2] the partition; then four words an
-- update, in log order: its stream id, story, position and record.
-- Returns how many updates were added.
-- include: older.lua

if redis.call('GET', KEYS[3]) == ARGV[1] then return 0 end
local mark = redis.call('HGET', KEYS[2], ARGV[2])
local added = 0
for i = 3, #ARGV, 4 do
  if not mark or older(mark, ARGV[i]) then
    redis.call('XADD', KEYS[1], '*', 'story', ARGV[i + 1], 'position', ARGV[i + 2],
      'record', ARGV[i + 3])
    added = added + 1
  end
end
local last = ARGV[#ARGV - 3]
if not mark or older(mark, last) then redis.call('HSET', KEYS[2], ARGV[2], last) end
return added
