-- A function, included by the scripts that compare log positions.
--
-- older(a, b): is stream id `a` before stream id `b`? Compared as two numbers, the
-- milliseconds and the sequence (not as strings: "9-0" is before "10-0").
local function older(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if tonumber(am) ~= tonumber(bm) then return tonumber(am) < tonumber(bm) end
  return tonumber(as) < tonumber(bs)
end
