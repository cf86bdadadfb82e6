-- Read a story for the query service: its state whole, where it is parked, and records.
--
-- KEYS[1] the story's state, KEYS[2] its statements list, KEYS[3] the projection's
--   parked stories, KEYS[4] the story's history in the log. On a cluster, where the
--   parked stories are in another slot, three keys: the history is KEYS[3], and the
--   caller reads where the story is parked itself.
-- ARGV[1] the story; ARGV[2] and ARGV[3] the first and last index of its history to
--   read (none if the last is below the first).
-- Returns {the state whole (as read_story.lua; false if none), the entry that parked
--   the story (false if none), those records}: one round trip. Not a pipeline of
--   read_story.lua and commands: redis-py sends SCRIPT EXISTS before each pipeline
--   that holds a script, a round trip more, and a command the query's ACL user is not
--   granted.
-- include: whole_story.lua
local records = {}
if tonumber(ARGV[3]) >= tonumber(ARGV[2]) then
  records = redis.call('LRANGE', KEYS[#KEYS], ARGV[2], ARGV[3])
end
local parked = false
if #KEYS == 4 then parked = redis.call('HGET', KEYS[3], ARGV[1]) end
return {whole(KEYS[1], KEYS[2]), parked, records}
