-- The stories updated last, newest first, over every region of a version's read models
-- (one, or one a partition: `layout.Region`), with their index entries.
--
-- KEYS: for each region, two keys: its by-time set (of every story, or of one status),
--   then its index.
-- ARGV[1] how many stories (256 at most, whatever is asked: the query user calls this).
-- ARGV[2], ARGV[3], optional: a place in the list (a score and a story id, the `next`
--   of a page, `query/paging.py`): only the stories after it, those of its score with a
--   smaller id (a batch's stories share their score) and then those of lower scores.
-- Returns the index entries of those stories, newest first, as one sorted set of them
--   all would order them (by score, then member, from the highest); a story missing
--   from its index is left out. One round trip and one command, where the reads of
--   each region merged by the caller took a pipeline per region and two round trips:
--   raw, 4,255 against 1,392 reads/s (8 partitions; one index before they were laid
--   out per partition: 6,267; sorting the 400 candidates rather than merging the
--   sorted heads: 1,584; `bench/readside.py`).
local limit = math.min(tonumber(ARGV[1]), 256)
local score, story = ARGV[2], ARGV[3]
local regions, lists, at = #KEYS / 2, {}, {}
for r = 1, regions do
  local key = KEYS[2 * r - 1]
  if score then
    local list = {}
    local ties = redis.call('ZREVRANGEBYSCORE', key, score, score, 'WITHSCORES')
    for i = 1, #ties, 2 do
      if ties[i] < story then
        list[#list + 1], list[#list + 2] = ties[i], ties[i + 1]
      end
    end
    local older = redis.call(
      'ZREVRANGEBYSCORE', key, '(' .. score, '-inf', 'WITHSCORES', 'LIMIT', 0, limit)
    for i = 1, #older do list[#list + 1] = older[i] end
    lists[r] = list
  else
    lists[r] = redis.call('ZREVRANGE', key, 0, limit - 1, 'WITHSCORES')
  end
  at[r] = 1
end
-- Each region's list is newest first already: take the best head, `limit` times.
local out = {}
for _ = 1, limit do
  local best, score, member = nil, nil, nil
  for r = 1, regions do
    local i = at[r]
    if i <= #lists[r] then
      local s, m = tonumber(lists[r][i + 1]), lists[r][i]
      if not best or s > score or (s == score and m > member) then
        best, score, member = r, s, m
      end
    end
  end
  if not best then break end
  at[best] = at[best] + 2
  local entry = redis.call('HGET', KEYS[2 * best], member)
  if entry then out[#out + 1] = entry end
end
return out
