-- Each partition's checkpoint, or each story's index entry, for a reader of read models
-- in a store of their own (`DATELINE_VIEWS_URL`), where the live index's page is read
-- from two servers: the entries from the log, then these from the store.
--
-- KEYS: hashes: each partition's checkpoints, or each story's region's index.
-- ARGV: the field of each, in the same order: the partition, or the story.
-- Returns each field's value, false for one that has none. One reply, where a command a
--   hash cost the query process a reply each to read (through redis-py: 1.1 ms of CPU
--   a page of 8 partitions, against 0.3 for the one script on one server).
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HGET', key, ARGV[i])
end
return out
