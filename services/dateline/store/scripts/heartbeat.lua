-- Say a process of a consumer group is alive, and count the live ones.
--
-- KEYS[1] the group's members (a sorted set: owner by when its heartbeat runs out).
-- ARGV[1] the owner (this process), ARGV[2] the time to live (ms).
-- Drops the members whose heartbeat ran out and renews ours, on the server's clock,
-- the same clock for every process.
-- Returns how many members are alive, this one included.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZCARD', KEYS[1])
