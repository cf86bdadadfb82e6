"""Partition leases: one process at a time consumes a partition, so one story's updates
are applied in log order even with several projector processes running."""

from __future__ import annotations

import redis.asyncio as aioredis

# Renew or release only a lease we still hold: compare, then act, in one step.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Leases:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        owner: str,
        ttl_ms: int,
        names: list[str] | None = None,
    ) -> None:
        self.client, self.prefix, self.owner, self.ttl_ms = client, prefix, owner, ttl_ms
        self.names = names  # what each index leases; None: partition N is "pN"
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def key(self, partition: int) -> str:
        name = self.names[partition] if self.names is not None else f"p{partition}"
        return f"{self.prefix}:lease:{name}"

    async def acquire(self, partition: int) -> bool:
        return bool(await self.client.set(self.key(partition), self.owner, nx=True, px=self.ttl_ms))

    async def renew(self, partition: int) -> bool:
        return bool(await self._renew(keys=[self.key(partition)], args=[self.owner, self.ttl_ms]))

    async def release(self, partition: int) -> None:
        await self._release(keys=[self.key(partition)], args=[self.owner])

    async def holder(self, partition: int) -> str | None:
        value = await self.client.get(self.key(partition))
        return value.decode() if isinstance(value, bytes) else value
