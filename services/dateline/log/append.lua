-- Append a batch of story updates to the log, atomically per call.
--
-- KEYS: every key the batch touches, once each (story lists, partition streams,
-- dedup hashes). All keys of one story share its partition's hash tag.
-- ARGV[1] "1" if the batch is all-or-nothing, ARGV[2] the number of updates, then
-- seven arguments per update:
--   story key index, log key index, ids key index, partition number,
--   dedup field, expected version ("" if none), body (the canonical JSON object
--   without its closing brace).
--
-- Returns one reply per update:
--   {"appended", version, position}      written now
--   {"duplicate", "version position story"}  the original, nothing written
--   {"conflict", current version}        expectedversion did not match, nothing written
--   {"aborted"}                          atomic batch refused because of another update
--
-- The story's version is the length of its list, so versions are gap-free by
-- construction. The partition stream ID is chosen here (from TIME, kept above the
-- stream's last ID) so that position and recordedtime go into the record itself.

local function civil(ms)
  -- Howard Hinnant's days-to-civil: epoch milliseconds to an RFC 3339 UTC string.
  local secs = math.floor(ms / 1000)
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(rem / 3600), math.floor((rem % 3600) / 60), rem % 60, ms % 1000)
end

local function last_id(key)
  if redis.call('EXISTS', key) == 0 then return {0, -1} end
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local ms, seq = string.match(info[i + 1], '^(%d+)-(%d+)$')
      return {tonumber(ms), tonumber(seq)}
    end
  end
  return {0, -1}
end

local atomic = ARGV[1] == '1'
local n = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local versions = {} -- story key -> version after this batch's appends so far
local seen = {}     -- ids key .. NUL .. field -> dedup value, within this batch
local last = {}     -- log key -> {ms, seq} of the last ID given out
local plan = {}
local replies = {}
local refused = false

for i = 0, n - 1 do
  local b = 3 + i * 7
  local skey = KEYS[tonumber(ARGV[b])]
  local lkey = KEYS[tonumber(ARGV[b + 1])]
  local ikey = KEYS[tonumber(ARGV[b + 2])]
  local part, field, expected, body = ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]
  local story = string.match(skey, ':story:(.*)$')
  local dk = ikey .. '\0' .. field
  local prior = seen[dk] or redis.call('HGET', ikey, field)
  if prior then
    replies[i + 1] = {'duplicate', prior}
  else
    local v = versions[skey]
    if v == nil then v = redis.call('LLEN', skey) end
    if expected ~= '' and tonumber(expected) ~= v then
      replies[i + 1] = {'conflict', v}
      refused = true
    else
      v = v + 1
      versions[skey] = v
      local l = last[lkey] or last_id(lkey)
      local ms, seq = now, 0
      if ms <= l[1] then ms, seq = l[1], l[2] + 1 end
      last[lkey] = {ms, seq}
      local id = string.format('%d-%d', ms, seq)
      local position = part .. ':' .. id
      seen[dk] = string.format('%d %s %s', v, position, story)
      plan[#plan + 1] = {skey, lkey, ikey, field, id, v, position, ms, body, dk}
      replies[i + 1] = {'appended', v, position}
    end
  end
end

if atomic and refused then
  for i = 1, n do
    if replies[i][1] == 'appended' then replies[i] = {'aborted'} end
  end
  return replies
end

for _, p in ipairs(plan) do
  local record = string.format('%s,"version":%d,"position":"%s","recordedtime":"%s"}',
    p[9], p[6], p[7], civil(p[8]))
  redis.call('XADD', p[2], p[5], '__data__', record)
  redis.call('RPUSH', p[1], record)
  redis.call('HSET', p[3], p[4], seen[p[10]])
end
return replies
