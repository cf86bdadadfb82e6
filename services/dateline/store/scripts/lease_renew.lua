-- Renew a partition lease, only if we still hold it: compare, then act, in one step.
--
-- KEYS[1] the lease.
-- ARGV[1] the owner (this process), ARGV[2] the time to live (ms).
-- Returns 1 if renewed, 0 if another process holds it or nobody does.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
