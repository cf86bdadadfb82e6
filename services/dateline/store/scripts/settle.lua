-- Move checkpoints past what the runner parked, when no commit follows.
--
-- KEYS: none (the keys are in ARGV, as the commit's ADVANCE commands carry them).
-- ARGV: advance()'s seven arguments (see advance.lua), once per partition.
-- Returns nothing.
-- include: advance.lua
for i = 1, #ARGV, 7 do advance(unpack(ARGV, i, i + 6)) end
