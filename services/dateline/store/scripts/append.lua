-- Append a batch of story updates to the log, atomically per call.
--
-- KEYS: every key the batch touches, once each (story lists, partition streams,
-- dedup hashes). All keys of one story share its partition's hash tag.
-- ARGV[1] "1" if the batch is all-or-nothing.
-- ARGV[2] msgpack array, one entry per update:
--   {story key index, log key index, ids key index, partition, dedup field,
--    expected version (-1 if none), body length}
-- ARGV[3] the bodies, concatenated: each the canonical JSON object without its
--   closing brace. (Three arguments, not seven per update: packing thousands of
--   arguments cost the client more than the script itself.)
--
-- Returns one reply per update:
--   {"appended", version, position}          written now
--   {"duplicate", "version position story"}  the original, nothing written
--   {"conflict", current version}            expectedversion did not match, nothing written
--   {"aborted"}                              atomic batch refused because of another update
--
-- The story's version is the length of its list, so versions are gap-free by
-- construction. The partition stream ID is chosen here (from TIME, kept above the
-- stream's last ID) so that position and recordedtime go into the record itself.
-- Lookups and writes that can be grouped by key are: one XADD per update remains.

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

local function grouped(cmd, key, items)
  -- One call per key instead of one per item; chunks stay under Lua's unpack limit.
  local out = {}
  for i = 1, #items, 1000 do
    local reply = redis.call(cmd, key, unpack(items, i, math.min(i + 999, #items)))
    if type(reply) == 'table' then
      for _, v in ipairs(reply) do out[#out + 1] = v end
    end
  end
  return out
end

local atomic = ARGV[1] == '1'
local meta = cmsgpack.unpack(ARGV[2])
local blob = ARGV[3]
local n = #meta
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Dedup lookups, one HMGET per partition.
local fields_by_ids = {}
for i = 1, n do
  local ikey = KEYS[meta[i][3]]
  fields_by_ids[ikey] = fields_by_ids[ikey] or {}
  table.insert(fields_by_ids[ikey], meta[i][5])
end
local stored = {}
for ikey, fields in pairs(fields_by_ids) do
  local values = grouped('HMGET', ikey, fields)
  for j, f in ipairs(fields) do
    if values[j] then stored[ikey .. '\0' .. f] = values[j] end
  end
end

local versions = {} -- story key -> version after this batch's appends so far
local last = {}     -- log key -> {ms, seq} of the last ID given out
local plan = {}
local replies = {}
local refused = false
local offset = 1

for i = 1, n do
  local m = meta[i]
  local skey, lkey, ikey = KEYS[m[1]], KEYS[m[2]], KEYS[m[3]]
  local part, field, expected = m[4], m[5], m[6]
  local body = string.sub(blob, offset, offset + m[7] - 1)
  offset = offset + m[7]
  local dk = ikey .. '\0' .. field
  local prior = stored[dk]
  if prior then
    replies[i] = {'duplicate', prior}
  else
    local v = versions[skey]
    if v == nil then v = redis.call('LLEN', skey) end
    if expected >= 0 and expected ~= v then
      replies[i] = {'conflict', v}
      refused = true
    else
      v = v + 1
      versions[skey] = v
      local l = last[lkey] or last_id(lkey)
      local ms, seq = now, 0
      if ms <= l[1] then ms, seq = l[1], l[2] + 1 end
      last[lkey] = {ms, seq}
      local id = string.format('%d-%d', ms, seq)
      local position = string.format('%d:%s', part, id)
      stored[dk] = string.format('%d %s %s', v, position, string.match(skey, ':story:(.*)$'))
      plan[#plan + 1] = {skey, lkey, ikey, field, id, v, position, ms, body, dk}
      replies[i] = {'appended', v, position}
    end
  end
end

if atomic and refused then
  for i = 1, n do
    if replies[i][1] == 'appended' then replies[i] = {'aborted'} end
  end
  return replies
end

local pushes, dedups = {}, {}
local civil_ms, civil_text = -1, ''
for _, p in ipairs(plan) do
  if p[8] ~= civil_ms then civil_ms, civil_text = p[8], civil(p[8]) end
  local record = string.format('%s,"version":%d,"position":"%s","recordedtime":"%s"}',
    p[9], p[6], p[7], civil_text)
  redis.call('XADD', p[2], p[5], '__data__', record)
  pushes[p[1]] = pushes[p[1]] or {}
  table.insert(pushes[p[1]], record)
  dedups[p[3]] = dedups[p[3]] or {}
  table.insert(dedups[p[3]], p[4])
  table.insert(dedups[p[3]], stored[p[10]])
end
for skey, records in pairs(pushes) do grouped('RPUSH', skey, records) end
for ikey, pairs_ in pairs(dedups) do grouped('HSET', ikey, pairs_) end
return replies
