"""What a log is made with, and how every process opens it: its config's partition count
and tags, not each process's settings."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio.cluster import RedisCluster

from dateline.store.cluster import LocalCluster
from dateline.store.connection import open_client
from dateline.store.layout import slot_of
from dateline.store.log import CLUSTER_PARTITIONS, PARTITIONS, Log, PartitionMismatch, log_keys
from tests.factories import encode, update


async def test_a_new_log_on_one_server_has_8_plain_partitions(redis_url: str) -> None:
    client = await open_client(redis_url)
    prefix = f"c{uuid.uuid4().hex[:8]}"
    try:
        unmade = await log_keys(client, prefix, create=False)
        assert not await client.exists(unmade.config)
        keys = await log_keys(client, prefix)
        assert (keys.partitions, keys.slotted) == (PARTITIONS, False)
        assert keys.log(0) == f"{prefix}:{{p0}}:log"
        assert await log_keys(client, prefix, 8) == keys
        with pytest.raises(PartitionMismatch, match="has 8 partitions; DATELINE_PARTITIONS is 16"):
            await log_keys(client, prefix, 16)
    finally:
        await client.aclose()


async def test_a_new_log_on_a_cluster_has_48_partitions_on_slot_tags(
    local_cluster: LocalCluster,
) -> None:
    client = await open_client(local_cluster.url)
    prefix = f"c{uuid.uuid4().hex[:8]}"
    try:
        unmade = await log_keys(client, prefix, create=False)  # a reader: nothing written
        assert not await client.exists(unmade.config)
        log = await Log.connect(local_cluster.url, prefix=prefix)
        keys = log.keys
        assert (keys.partitions, keys.slotted) == (CLUSTER_PARTITIONS, True)
        assert unmade == keys  # what the reader assumed is what was made
        assert await client.hgetall(keys.config) == {b"partitions": b"48", b"tags": b"slots"}
        # The masters hold 16 partitions each, by the cluster's own account of its slots.
        assert isinstance(client, RedisCluster)
        owners = [client.get_node_from_key(keys.log(p)).name for p in range(keys.partitions)]
        assert sorted(owners.count(o) for o in set(owners)) == [16, 16, 16]
        assert slot_of(keys.tag(5).strip("{}")) == client.keyslot(keys.log(5))
        [result] = await log.append([encode(update(subject="s"))])
        assert result.position is not None
        assert await client.xlen(keys.log(keys.partition("s"))) == 1
        # Opened again from its config, whatever a process's settings say of tags.
        again = await Log.connect(local_cluster.url, prefix=prefix, partitions=48)
        assert again.keys == keys
        await again.close()
        await log.close()
        with pytest.raises(PartitionMismatch, match="made on a cluster"):
            await Log(client, type(keys)(prefix, 48)).check_partitions()
    finally:
        await client.aclose()
