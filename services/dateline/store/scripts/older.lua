-- A function, included by the scripts that compare log positions.
--
-- older(a, b): is stream id `a` before stream id `b`? The milliseconds, then the
-- sequence, each compared as a number: the shorter is the smaller ("9-0" is before
-- "10-0"; a server writes no leading zeros), else the digits in order. Not by tonumber,
-- which is libc's strtod twice a call: 2% of the projector's server instructions.
local function older(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if am ~= bm then
    if #am ~= #bm then return #am < #bm end
    return am < bm
  end
  if #as ~= #bs then return #as < #bs end
  return as < bs
end
