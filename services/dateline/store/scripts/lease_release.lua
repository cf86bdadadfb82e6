-- Release a partition lease, only if we still hold it.
--
-- KEYS[1] the lease.
-- ARGV[1] the owner (this process).
-- Returns 1 if released, 0 if another process holds it or nobody does.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
