-- The records at positions of the log, to compare duplicates with their originals
-- (`store/reused.py`). Read-only.
--
-- KEYS: partition streams, once each.
-- ARGV: pairs of a key's index in KEYS and a stream id there.
-- Returns one record (its `__data__`) a pair, in order; false (a null) where the
-- stream holds no entry at that id. One command a batch where a pipeline of a read a
-- duplicate cost the client three times the append itself (`bench/log_append.py`).
-- XREVRANGE, not XRANGE: the one the `ingest` user holds.
local out = {}
for i = 1, #ARGV, 2 do
  local found = redis.call('XREVRANGE', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 1])
  local record = false
  if found[1] then
    local fields = found[1][2]
    for j = 1, #fields, 2 do
      if fields[j] == '__data__' then record = fields[j + 1] end
    end
  end
  out[i / 2 + 0.5] = record
end
return out
