"""Pages of commands on a cluster, as a restore, a migrate or a rebuild sends them
(`connection.sent_whole` for writes, `sent_by_slot` for reads): each slot's commands to
the node that owns it, a transaction a slot for writes, the replies in the order given;
a slot's part refused whole, nothing of it written, when a command in it spans slots; an
error inside raises, and the connections serve the next page; a slot that moved is
followed once."""

from __future__ import annotations

import uuid
from typing import cast

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError, ResponseError

from dateline.store.connection import open_client, sent_by_slot, sent_whole


async def test_pages_go_slot_by_slot_and_come_back_in_order(cluster_url: str) -> None:
    client = await open_client(cluster_url)
    one, two = (f"{{slot-{uuid.uuid4().hex[:8]}}}" for _ in range(2))
    listed, named = f"{one}:list", f"{two}:name"
    try:
        written = [("RPUSH", listed, "a"), ("SET", named, "b"), ("RPUSH", listed, "c")]
        assert await sent_whole(client, written) == [1, b"OK", 2]
        read = [("LRANGE", listed, 0, -1), ("GET", named), ("LLEN", listed)]
        assert await sent_by_slot(client, read) == [[b"a", b"c"], b"b", 2]

        # A command whose keys span slots: its slot's part is refused as it is queued,
        # and EXEC then runs none of it.
        spanning = [("RPUSH", listed, "d"), ("MSET", f"{one}:x", "1", f"{two}:y", "2")]
        with pytest.raises(ClusterCrossSlotError):
            await sent_whole(client, spanning)
        assert await client.lrange(listed, 0, -1) == [b"a", b"c"]

        # An error as it runs: the others are applied (a transaction does not roll back),
        # and the caller hears of it.
        wrong = [("RPUSH", named, "e"), ("SET", f"{two}:z", "f")]
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await sent_whole(client, wrong)
        assert await client.get(f"{two}:z") == b"f"
        assert await sent_by_slot(client, [("LLEN", listed), ("GET", named)]) == [
            2,
            b"b",
        ]
    finally:
        for key in (listed, named, f"{one}:x", f"{two}:y", f"{two}:z"):
            await client.delete(key)
        await client.aclose()


async def test_a_slot_that_moved_is_followed_to_its_node(cluster_url: str) -> None:
    """The client's layout says another master holds the slot (as after a failover or
    a resharding it learnt nothing of): that master answers `MOVED`, nothing of the
    part is applied there, and the part goes again to the node it names, once."""
    client = await open_client(cluster_url)
    cluster = cast(RedisCluster, client)
    tag = f"{{slot-{uuid.uuid4().hex[:8]}}}"
    listed = f"{tag}:list"
    try:
        await cluster.initialize()
        slot = key_slot(listed.encode())
        owner = cluster.nodes_manager.get_node_from_slot(slot)
        other = next(n for n in cluster.get_primaries() if n.name != owner.name)
        cluster.nodes_manager.slots_cache[slot] = [other]  # stale
        assert await sent_whole(client, [("RPUSH", listed, "a")]) == [1]
        assert await sent_by_slot(client, [("LRANGE", listed, 0, -1)]) == [[b"a"]]
        assert cluster.nodes_manager.get_node_from_slot(slot).name == owner.name
    finally:
        await client.delete(listed)
        await client.aclose()
