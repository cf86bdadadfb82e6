-- Acknowledge a partition's entries for a group, then say how far the partition is
-- settled for it: a projector sends this after each commit to its store of read models
-- (`DATELINE_VIEWS_URL`) when the log is on a cluster, a call a partition in its slot,
-- one round trip where the XACK and `settled.lua` were two. (On a cluster the runner
-- cannot say how far the group delivered: a failover hides behind the client's retries.)
--
-- KEYS[1]: the partition's stream.
-- ARGV[1]: the group; ARGV[2..]: the entry ids to acknowledge (none is allowed).
-- Returns the stream id the partition is settled up to, or false if nothing is.
-- include: advance.lua
if #ARGV > 1 then redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2)) end
return settled(KEYS[1], ARGV[1], '') or false
