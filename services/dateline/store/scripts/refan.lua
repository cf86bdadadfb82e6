-- Put redriven updates of the fan-out's group in one subscription's outbox: those its
-- held updates name (`hold.lua`), each once, in the order given.
--
-- The fan-out (`deliver/fanout.py`) calls it when ops redrive a story the fan-out had
-- parked. The subscription's mark is not asked or moved: it is past these updates
-- when later ones of other stories went out meanwhile. An update leaves the held hash
-- in the step that adds it, so a redrive served again after a crash adds nothing
-- twice. A removed subscription gets nothing.
--
-- KEYS[1] the outbox, KEYS[2] the held updates, KEYS[3] the tombstone.
-- ARGV[1] the subscription's `created`; then three words an update, in log order: its
-- position, story and record.
-- Returns how many updates were added.

if redis.call('GET', KEYS[3]) == ARGV[1] then return 0 end
local added = 0
for i = 2, #ARGV, 3 do
  if redis.call('HDEL', KEYS[2], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[1], '*', 'story', ARGV[i + 1], 'position', ARGV[i],
      'record', ARGV[i + 2])
    added = added + 1
  end
end
return added
