"""Partition leases: one process at a time consumes a partition, so one story's updates
are applied in log order even with several projector processes running.

The processes of a group also share the partitions out: each says it is alive in a
members set (its heartbeat, with the lease's time to live), and holds at most its
share, the partitions divided by the live members, rounded up. A process that holds
more gives the rest back; a process below its share takes free ones.
"""

from __future__ import annotations

import time
from typing import cast

import redis.asyncio as aioredis

from dateline.store import scripts
from dateline.store.connection import is_cluster
from dateline.store.layout import GroupKeys


class Leases:
    def __init__(
        self,
        client: aioredis.Redis,
        group: GroupKeys,
        owner: str,
        ttl_ms: int,
        names: list[str] | None = None,
    ) -> None:
        self.client, self.group, self.owner, self.ttl_ms = client, group, owner, ttl_ms
        self.names = names  # what each index leases; None: partition N is "pN"
        self._renew = scripts.bound(client, "lease_renew")
        self._release = scripts.bound(client, "lease_release")
        self._heartbeat = scripts.bound(client, "heartbeat")

    @property
    def members(self) -> str:
        """The group's live processes: a sorted set, owner by when its heartbeat runs out."""
        return self.group.members

    async def heartbeat(self) -> int:
        """Say this process is alive for another time to live; how many processes are."""
        return int(await self._heartbeat(keys=[self.members], args=[self.owner, self.ttl_ms]))

    async def leave(self) -> None:
        """On a clean stop: the others count without this process at once."""
        await self.client.zrem(self.members, self.owner)

    def key(self, partition: int) -> str:
        if self.names is None:
            return self.group.partition_lease(partition)
        return self.group.lease(self.names[partition])

    async def acquire(self, partition: int) -> bool:
        return bool(await self.client.set(self.key(partition), self.owner, nx=True, px=self.ttl_ms))

    async def renew(self, partition: int) -> bool:
        return bool(await self._renew(keys=[self.key(partition)], args=[self.owner, self.ttl_ms]))

    async def release(self, partition: int) -> None:
        await self._release(keys=[self.key(partition)], args=[self.owner])

    async def holders(self, count: int) -> list[str | None]:
        """Who holds each of the first `count` partitions, in one round trip."""
        if not count:
            return []
        if is_cluster(self.client):  # each lease its own slot: a GET each, by node
            pipe = self.client.pipeline(transaction=False)
            for n in range(count):
                pipe.get(self.key(n))
            found = await pipe.execute()
        else:
            found = await self.client.mget([self.key(n) for n in range(count)])
        return [v.decode() if isinstance(v, bytes) else v for v in found]

    async def alive(self) -> list[str]:
        """The members whose heartbeat has not run out (by this machine's clock), by name."""
        found = await self.client.zrangebyscore(self.members, time.time() * 1000, "+inf")
        return sorted(m.decode() for m in cast(list[bytes], found))
