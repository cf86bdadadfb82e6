-- Functions, included by the scripts that move a partition's checkpoint.
--
-- settled(stream, group, delivered) is how far the group is settled there, and
-- moveto(checkpoints, partition, upto, verb, channel[, named[, after, page]]) moves the checkpoint there: with
-- the read models on the log's server, advance() does both in one step; with them in a
-- store of their own (`DATELINE_VIEWS_URL`), the first runs on the log (settled.lua)
-- and the second on the views store (commit.lua's CHECKPOINT).
--
-- advance(checkpoints, partition, stream, group, verb, channel, delivered[, named[, after, page]]) moves the
-- partition's checkpoint past every entry its group was delivered and holds no longer
-- (applied, or parked), never past one it still holds (it failed and waits for a retry,
-- or waits behind one of its story's that did), never backwards; and publishes the new
-- checkpoint on `channel` as a position, `<partition>:<stream id>`, by `verb`: PUBLISH
-- on one server, SPUBLISH on a cluster (the channel is in the stream's slot, and only
-- the shard's nodes hear it, not every node of the cluster). Readers take what
-- is under it as settled: `min_position` answers, the index stream announces it.
-- `named`, if given and not '': the stories whose read models the same commit wrote
-- there, space-separated (story ids hold no space), after the position, so that a
-- query process drops what it keeps of those stories alone (`query/cache.py`); a
-- message without names drops every story of the partition.
--
-- `delivered`, if not '': the last entry a read of new entries gave the caller, which
-- holds the partition's lease (`Runner.delivered`). The group has delivered that far at
-- least, so it stands for the group's last-delivered id, which `XINFO GROUPS` returns
-- with every other group's fields: 7.5 us and 3.7 to read in Lua, a partition a commit
-- (7% of the projector's server instructions at 5 updates a cycle). '': ask the group.
-- include: older.lua

local function settled(stream, group, delivered)
  -- How far the partition at `stream` is settled for `group`: its last-delivered id
  -- (`delivered` if not ''), but short of the oldest entry the group still holds. nil
  -- if nothing is.
  local upto = nil
  if delivered ~= '' then
    upto = delivered
  else
    for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      local fields = {}
      for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
      if fields['name'] == group then upto = fields['last-delivered-id'] end
    end
  end
  if not upto or upto == '0-0' then return nil end
  local pending = redis.call('XPENDING', stream, group)
  if pending[1] > 0 then
    local before = redis.call('XREVRANGE', stream, '(' .. pending[2], '-', 'COUNT', 1)
    if #before == 0 then return nil end
    if older(before[1][1], upto) then upto = before[1][1] end
  end
  return upto
end

local function moveto(key, partition, upto, verb, channel, named, after, page)
  -- The partition's checkpoint to `upto`, never backwards, announced on `channel`; with
  -- `named` (the stories the commit wrote there, space-separated) if not nil or ''; and
  -- with `page` (what the commit applied there, `store/pages.py`) after a space and a
  -- NUL, if the checkpoint was at `after` (where the page's entries begin): else a
  -- commit the projector did not know of lies between, and the page would hide it.
  local current = redis.call('HGET', key, partition)
  if current and not older(current, upto) then return end
  redis.call('HSET', key, partition, upto)
  local news = partition .. ':' .. upto
  if named and named ~= '' then news = news .. ' ' .. named end
  if page and page ~= '' and current == after then news = news .. ' \0' .. page end
  redis.call(verb, channel, news)
end

local function advance(key, partition, stream, group, verb, channel, delivered, named, after, page)
  -- `page`, if given, ends where the runner was delivered: carried only if the
  -- checkpoint moves that far (an entry the group still holds keeps it short).
  local upto = settled(stream, group, delivered)
  if upto ~= delivered then page = nil end
  if upto then moveto(key, partition, upto, verb, channel, named, after, page) end
end
