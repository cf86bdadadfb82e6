"""A partition's page of writes on a cluster (`connection.sent_to_slot`), as a restore or
a migrate sends it: applied as one transaction on the node that owns the partition's
slot; refused whole, nothing written, when a command names another slot; an error
inside raises, and the connection serves the next page."""

from __future__ import annotations

import uuid

import pytest
from redis.exceptions import ClusterCrossSlotError, MovedError, ResponseError

from dateline.store.connection import open_client, sent_to_slot


async def test_a_page_is_one_transaction_on_its_slots_node(cluster_url: str) -> None:
    client = await open_client(cluster_url)
    tag = f"{{slot-{uuid.uuid4().hex[:8]}}}"
    listed, named = f"{tag}:list", f"{tag}:name"
    try:
        assert await sent_to_slot(client, listed, [("RPUSH", listed, "a"), ("SET", named, "b")])
        assert await client.lrange(listed, 0, -1) == [b"a"]

        # Another slot, on this node or another: the page is refused as it is queued,
        # and EXEC then runs none of it.
        with pytest.raises(ResponseError) as refused:
            await sent_to_slot(client, listed, [("RPUSH", listed, "c"), ("SET", "elsewhere", "d")])
        assert isinstance(refused.value, (ClusterCrossSlotError, MovedError)), refused.value
        assert await client.lrange(listed, 0, -1) == [b"a"]
        assert await client.get("elsewhere") is None

        # An error as it runs: the others are applied (a transaction does not roll back),
        # and the caller hears of it.
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await sent_to_slot(client, listed, [("RPUSH", named, "e"), ("RPUSH", listed, "f")])
        assert await client.lrange(listed, 0, -1) == [b"a", b"f"]
        assert await sent_to_slot(client, listed, [("LLEN", listed)]) == [2]
    finally:
        await client.delete(listed)
        await client.delete(named)
        await client.aclose()
