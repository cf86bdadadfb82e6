-- How far each partition is settled for a group, on a log whose read models are in a
-- store of their own (`DATELINE_VIEWS_URL`): what the projector then writes there as the
-- partition's checkpoint (commit.lua's CHECKPOINT).
--
-- KEYS: none (the streams are in ARGV, as settle.lua's are).
-- ARGV: settled()'s three arguments (see advance.lua), once per partition.
-- Returns one reply per partition: its stream id, or false if nothing is settled.
-- include: advance.lua
local out = {}
for i = 1, #ARGV, 3 do
  out[#out + 1] = settled(unpack(ARGV, i, i + 2)) or false
end
return out
