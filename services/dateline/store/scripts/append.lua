-- Append a batch of story updates to the log, atomically per call.
--
-- KEYS: every key the batch touches, once each (story lists, partition streams,
-- dedup hashes). All keys of one story share its partition's hash tag. It reads each
-- partition's marker too (its stream's key ending in `seal`, not `log`), which is not
-- among KEYS: declared, the appending user would need to be allowed to write it.
-- ARGV[1] "1" if the batch is all-or-nothing.
-- ARGV[2] msgpack array, seven entries per update, one update after another (flat: a
--   table an update cost a batch of 1,000 6% of its instructions):
--   story key index, log key index, ids key index, partition, dedup field,
--   expected version (-1 if none), body length
-- ARGV[3] the bodies, concatenated: each the canonical JSON object without its
--   closing brace. (Three arguments, not seven per update: packing thousands of
--   arguments cost the client more than the script itself.)
-- ARGV[4] "1" for the replies as one text (below); absent, as tables (releases before
--   2026-12-06, which call a sealed log's function without it).
-- ARGV[5] "1" if no two updates of the batch share a dedup field: the caller checked,
--   so the script keeps no table of the batch's fields.
--
-- Returns one reply per update, as a line of one text (lines apart by "\n"):
--   "a <version> <position>"            appended now
--   "d <version> <position> <story>"    a duplicate: the original, nothing written
--   "c <current version>"               expectedversion did not match, nothing written
--   "x"                                 atomic batch refused because of another update
-- or, without ARGV[4], as a table each: {"appended", version, position},
-- {"duplicate", "version position story"}, {"conflict", current version}, {"aborted"}.
-- (Turning a table a reply into the protocol's arrays was a ninth of a batch's
-- instructions: the server looks up six names in each table to tell its kind.)
-- or, as a script, the error "SEALED <function>" with nothing written when a partition
-- of the batch is sealed (`store/seal.py`): only that function appends there; or
-- "RELOCATED <detail>" with nothing written when the log is being moved, or has moved, to
-- another server (`dateline migrate`, `store/migrate.py`): the marker's `moving` field.
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

local function finish(body, version, position, time)
  return body .. ',"version":' .. version .. ',"position":"' .. position .. '","recordedtime":"' .. time .. '"}'
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
local as_text = ARGV[4] == '1'
local distinct = ARGV[5] == '1'
local meta = cmsgpack.unpack(ARGV[2])
if type(meta[1]) == 'table' then
  -- A table an update, as clients of releases before 2026-12-04 send it to the
  -- function a sealed log names (`seal.py`, `log.py`'s `_wire`): made flat.
  local flat = {}
  for i, m in ipairs(meta) do
    for k = 1, 7 do flat[i * 7 - 7 + k] = m[k] end
  end
  meta = flat
end
local blob = ARGV[3]
local n = #meta / 7

local checked = {}
for i = 1, n do
  local lkey = KEYS[meta[i * 7 - 5]]
  if not checked[lkey] then
    checked[lkey] = true
    local rules = redis.call('HMGET', string.sub(lkey, 1, -4) .. 'seal', 'moving', 'from',
      'function')
    if rules[1] then return redis.error_reply('RELOCATED ' .. rules[1]) end
    -- unsealed only: begin
    if rules[2] then return redis.error_reply('SEALED ' .. (rules[3] or '')) end
    -- unsealed only: end
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Numbers are made text with string.format('%d'): a number joined to a string goes
-- through printf's floating-point path ('%.14g'). Each is made text once a call (a
-- version or a sequence number, by `numeral`; a millisecond and its time, by
-- `placed`): printf was a fifteenth of a batch's instructions when each was made
-- text where it was used.
local numerals = {}
local function numeral(v)
  local text = string.format('%d', v)
  numerals[v] = text
  return text
end
local ms_at, ms_text, civil_text = -1, '', ''
local part_texts = {} -- log key -> '<partition>:'

local function placed(lkey, part_n, body, ms, seq, version)
  -- An update at stream ID ms-seq of `lkey`: that ID, its position and its record.
  if ms ~= ms_at then ms_at, ms_text, civil_text = ms, string.format('%d-', ms), civil(ms) end
  local id = ms_text .. (numerals[seq] or numeral(seq))
  local part = part_texts[lkey]
  if not part then part = string.format('%d:', part_n); part_texts[lkey] = part end
  local position = part .. id
  -- The record made in one join, a copy of its body made once.
  return id, position, finish(body, version, position, civil_text)
end

local function placed_next(lkey, part_n, body, version, lms, lseq)
  -- The update added to `lkey` at the first ID past both now and the last ID this call
  -- gave out there (lms-lseq, nil for none yet): ms, seq, position, record.
  local ms, seq = now, 0
  if lms == nil then
    -- The stream's first of this call: its entry at or past this millisecond, if any,
    -- is its last. (An empty answer costs next to nothing. Its last ID by XINFO STREAM,
    -- which returns the first and last entries whole, cost a one-update call 14% of its
    -- instructions.)
    local tail = redis.call('XREVRANGE', lkey, '+', ms_at == now and ms_text .. '0'
      or string.format('%d-0', now), 'COUNT', 1)
    if #tail > 0 then
      local tms, tseq = string.match(tail[1][1], '^(%d+)-(%d+)$')
      ms, seq = tonumber(tms), tonumber(tseq) + 1
    end
  elseif ms <= lms then
    ms, seq = lms, lseq + 1
  end
  local id, position, record = placed(lkey, part_n, body, ms, seq, version)
  -- Tried first: an entry deleted from the stream's end would leave its last ID past
  -- what XREVRANGE saw; then nothing was written, and it goes on from the last ID.
  local added = lms == nil and redis.pcall('XADD', lkey, id, '__data__', record)
  if not added or (type(added) == 'table' and added.err) then
    if added then
      local l = last_id(lkey)
      if ms <= l[1] then ms, seq = l[1], l[2] + 1 end
      id, position, record = placed(lkey, part_n, body, ms, seq, version)
    end
    redis.call('XADD', lkey, id, '__data__', record)
  end
  return ms, seq, position, record
end

if n == 1 then
  -- One update, as a feed's POST sends it: the batch's path below without its tables
  -- (its plan's columns, its groupings), which with their collection were a third of a
  -- one-update call's instructions (callgrind: 219,000 against 156,000). Same replies.
  local skey, lkey, ikey = KEYS[meta[1]], KEYS[meta[2]], KEYS[meta[3]]
  local field, expected = meta[5], meta[6]
  -- Its reply made without the columns: a table filled from empty is rehashed as it
  -- grows, which for one reply cost more than the text saved.
  local prior = redis.call('HGET', ikey, field)
  if prior then
    return as_text and 'd ' .. prior or {{'duplicate', prior}}
  end
  local v = redis.call('LLEN', skey)
  if expected >= 0 and expected ~= v then
    return as_text and string.format('c %d', v) or {{'conflict', v}}
  end
  local version = string.format('%d', v + 1)
  local _, _, position, record = placed_next(lkey, meta[4], blob, version, nil, nil)
  redis.call('RPUSH', skey, record)
  redis.call('HSET', ikey, field,
    version .. ' ' .. position .. ' ' .. string.match(skey, ':story:(.*)$'))
  return as_text and 'a ' .. version .. ' ' .. position or {{'appended', v + 1, position}}
end

-- The replies, as columns: kinds[i] is 'a', 'd', 'c' or 'x'; firsts[i] the version's
-- text (a), the original's "version position story" or the index of this call's
-- update it repeats (d), the current version (c); seconds[i] the position (a).
local kinds, firsts, seconds = {}, {}, {}

local function answer()
  if as_text then
    -- Pieces joined once: no string an update but the ones the records made already.
    local out, k = {}, 0
    for i = 1, n do
      local kind = kinds[i]
      if kind == 'a' then
        out[k + 1], out[k + 2], out[k + 3], out[k + 4] = 'a ', firsts[i], ' ', seconds[i]
        k = k + 4
      elseif kind == 'x' then
        out[k + 1] = 'x'
        k = k + 1
      else
        local first = firsts[i]
        out[k + 1], out[k + 2] = kind == 'c' and 'c ' or 'd ',
          kind == 'c' and string.format('%d', first) or first
        k = k + 2
      end
      out[k + 1] = '\n'
      k = k + 1
    end
    return table.concat(out, '', 1, k - 1)
  end
  local replies = {}
  for i = 1, n do
    local kind = kinds[i]
    if kind == 'a' then
      replies[i] = {'appended', tonumber(firsts[i]), seconds[i]}
    elseif kind == 'd' then
      replies[i] = {'duplicate', firsts[i]}
    elseif kind == 'c' then
      replies[i] = {'conflict', firsts[i]}
    else
      replies[i] = {'aborted'}
    end
  end
  return replies
end

-- Dedup lookups, one HMGET per partition. (Lookups by partition, then field: a key
-- built of both for each update cost more than the lookup.)
local fields_by_ids = {}
for i = 1, n do
  local ikey = KEYS[meta[i * 7 - 4]]
  local fields = fields_by_ids[ikey]
  if not fields then fields = {}; fields_by_ids[ikey] = fields end
  fields[#fields + 1] = meta[i * 7 - 2]
end
local stored = {}
for ikey, fields in pairs(fields_by_ids) do
  local values = grouped('HMGET', ikey, fields)
  local here = {}
  for j, f in ipairs(fields) do
    if values[j] then here[f] = values[j] end
  end
  stored[ikey] = here
end

local versions = {} -- story key -> version after this batch's appends so far
local names = {}    -- story key -> story id
-- The plan, as columns rather than a table an update: allocations are most of the
-- script's own time.
local p_story, p_log, p_ids, p_field, p_version, p_part, p_body, p_at =
  {}, {}, {}, {}, {}, {}, {}, {}
local planned = 0
local refused = false
local offset = 1

for i = 1, n do
  local b = i * 7 - 7
  local skey, lkey, ikey = KEYS[meta[b + 1]], KEYS[meta[b + 2]], KEYS[meta[b + 3]]
  local field, expected = meta[b + 5], meta[b + 6]
  local size = meta[b + 7]
  local here = stored[ikey]
  local prior = here[field]
  if prior then
    kinds[i], firsts[i] = 'd', prior -- a number: this call's, filled in below
  else
    local v = versions[skey]
    if v == nil then v = redis.call('LLEN', skey) end
    if expected >= 0 and expected ~= v then
      kinds[i], firsts[i] = 'c', v
      refused = true
    else
      v = v + 1
      versions[skey] = v
      planned = planned + 1
      -- Its position is known once its stream ID is (below); a later update of this
      -- call with the same dedup field is a duplicate of this one.
      if not distinct then here[field] = planned end
      p_story[planned], p_log[planned], p_ids[planned], p_field[planned] = skey, lkey, ikey, field
      p_version[planned], p_part[planned] = v, meta[b + 4]
      p_body[planned], p_at[planned] = string.sub(blob, offset, offset + size - 1), i
    end
  end
  offset = offset + size
end

if atomic and refused then -- nothing placed: the planned, and their duplicates, are not
  for j = 1, planned do kinds[p_at[j]] = 'x' end
  for i = 1, n do
    if kinds[i] == 'd' and type(firsts[i]) == 'number' then kinds[i] = 'x' end
  end
  return answer()
end

local pushes, dedups = {}, {}
local last_ms, last_seq = {}, {} -- log key -> the last ID given out
local p_position = {}
for j = 1, planned do
  local lkey = p_log[j]
  local v = p_version[j]
  local version = numerals[v] or numeral(v)
  local ms, seq, position, record = placed_next(lkey, p_part[j], p_body[j], version,
    last_ms[lkey], last_seq[lkey])
  last_ms[lkey], last_seq[lkey] = ms, seq
  p_position[j] = position
  local skey = p_story[j]
  local at = p_at[j]
  kinds[at], firsts[at], seconds[at] = 'a', version, position
  local name = names[skey]
  if not name then name = string.match(skey, ':story:(.*)$'); names[skey] = name end
  local pushed = pushes[skey]
  if not pushed then pushed = {}; pushes[skey] = pushed end
  pushed[#pushed + 1] = record
  local ikey = p_ids[j]
  local dedup = dedups[ikey]
  if not dedup then dedup = {}; dedups[ikey] = dedup end
  dedup[#dedup + 1] = p_field[j]
  dedup[#dedup + 1] = version .. ' ' .. position .. ' ' .. name
end
if not distinct then
  for i = 1, n do -- a duplicate of an update of this call names it, now that it is placed
    if kinds[i] == 'd' and type(firsts[i]) == 'number' then
      local j = firsts[i]
      firsts[i] = firsts[p_at[j]] .. ' ' .. p_position[j] .. ' ' .. names[p_story[j]]
    end
  end
end
for skey, records in pairs(pushes) do grouped('RPUSH', skey, records) end
for ikey, pairs_ in pairs(dedups) do grouped('HSET', ikey, pairs_) end
return answer()
