"""`LocalCluster`: a Redis Cluster of embedded servers, and what dateline says on one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from dateline.store.cluster import LocalCluster
from dateline.store.connection import OnACluster, connect
from dateline.store.embedded import EmbeddedRedisError
from dateline.store.layout import Keys
from dateline.store.log import Log
from tests.factories import encode, update


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster"), 3, 1, "everysec", "s3cret") as c:
        yield c


def roles(cluster: LocalCluster) -> list[str]:
    out = []
    for node in cluster.nodes:
        client = redis.Redis.from_url(node.url)
        try:
            out.append(client.info("replication")["role"])
        finally:
            client.close()
    return out


def test_three_masters_each_with_a_replica_serve_every_slot(cluster: LocalCluster) -> None:
    assert sorted(roles(cluster)) == ["master"] * 3 + ["slave"] * 3
    client = RedisCluster.from_url(cluster.url)
    try:
        keys = [f"k{i}" for i in range(30)]  # over every master
        assert len({client.keyslot(k) * 3 // 16384 for k in keys}) == 3
        for k in keys:
            client.set(k, k)
        assert [client.get(k) for k in keys] == [k.encode() for k in keys]
        info = client.cluster_info()
        assert (info["cluster_state"], int(info["cluster_slots_ok"])) == ("ok", 16384)
    finally:
        client.close()
    refused = redis.Redis.from_url(cluster.url.replace(":s3cret@", ":wrong@"))
    with pytest.raises(redis.AuthenticationError):
        refused.ping()  # every node requires the password


def test_started_again_on_its_directory_the_same_cluster_comes_back(tmp_path: Path) -> None:
    first = LocalCluster(tmp_path, 3, 0, "always")
    with first:
        ports = [n.port for n in first.nodes]
        client = RedisCluster.from_url(first.url)
        client.set("kept", "yes")
        client.close()
    with LocalCluster(tmp_path, 3, 0, "always") as again:  # not created anew: it rejoins
        assert [n.port for n in again.nodes] == ports
        client = RedisCluster.from_url(again.url)
        assert client.get("kept") == b"yes"
        client.close()
    with pytest.raises(EmbeddedRedisError, match="start it with --masters 3 --replicas 0"):
        LocalCluster(tmp_path, 4, 0, "always").start()


async def test_dateline_on_a_cluster_node_says_what_it_is(cluster: LocalCluster) -> None:
    """Not a bare MOVED or CROSSSLOT: the error names a cluster and what to do."""
    log = Log(connect(cluster.url), Keys("onc", 8))
    try:
        with pytest.raises(OnACluster, match=r"is a Redis Cluster node.*point REDIS_URL"):
            await log.append([encode(update(subject=f"s{i}")) for i in range(16)])
        answers: list[str] = []
        for i in range(12):  # one key a call: those of other nodes' slots are MOVED
            try:
                answers.append(str(await log.version(f"s{i}")))
            except OnACluster as exc:
                answers.append(str(exc))
        moved = [a for a in answers if "MovedError" in a]
        assert 0 < len(moved) < 12
        assert set(answers) - set(moved) == {"0"}
    finally:
        await log.close()
