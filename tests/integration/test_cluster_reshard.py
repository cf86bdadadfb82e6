"""A slot of the log moved to another master while the projector works: a resharding.

A slot moves a key at a time (`CLUSTER SETSLOT ... MIGRATING`, `MIGRATE`, then `SETSLOT
... NODE`), as `valkey-cli --cluster reshard` moves it. Meanwhile a script whose keys are
split between the two nodes is refused (TRYAGAIN), and one that reaches a key not
declared, gone already, fails there, its writes before it made. Here the projector's
commit meets a partition whose checkpoint, or index, has gone ahead of its stories."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
import redis
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from dateline.projector.replay import rebuild_all
from dateline.store.cluster import LocalCluster
from dateline.store.connection import UNREACHABLE
from dateline.store.log import Log
from tests.factories import encode, update
from tests.integration.test_cluster_projector import one_a_partition, projector
from tests.integration.test_projector import settle
from tests.models_help import Dump, dump


def _do(client: redis.Redis, *args: Any) -> Any:
    """A command of the cluster's own (`CLUSTER`, `MIGRATE`) on one node."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _masters(cluster: LocalCluster) -> dict[str, redis.Redis]:
    """Each master's client, by its node id."""
    found = {}
    for node in cluster.nodes:
        client = redis.Redis.from_url(node.url)
        if _do(client, "ROLE")[0] == b"master":
            found[_do(client, "CLUSTER", "MYID").decode()] = client
        else:
            client.close()
    return found


@contextmanager
def moving(cluster: LocalCluster, key: str) -> Iterator[Any]:
    """The slot of `key` set moving from its master to another, and some of its keys
    moved: those whose names hold the text given (the function yielded). On leaving, its other keys moved and the slot given to
    the other master; then moved back, so the session's cluster is as it was."""
    masters = _masters(cluster)
    try:
        any_node = next(iter(masters.values()))
        slot = cast(int, _do(any_node, "CLUSTER", "KEYSLOT", key))
        src = next(
            nid
            for nid, c in masters.items()
            for lo, hi, owner, *_ in _do(c, "CLUSTER", "SLOTS")
            if lo <= slot <= hi and owner[2].decode() == nid
        )
        dst = next(nid for nid in masters if nid != src)

        def move_some(keys: list[bytes], source: str, target: str) -> None:
            port = masters[target].connection_pool.connection_kwargs["port"]
            _do(
                masters[source],
                "MIGRATE",
                "127.0.0.1",
                port,
                "",
                0,
                5000,
                "AUTH",
                cluster.password,
                "KEYS",
                *keys,
            )

        def move(source: str, target: str, first: str) -> None:
            _do(masters[target], "CLUSTER", "SETSLOT", slot, "IMPORTING", source)
            _do(masters[source], "CLUSTER", "SETSLOT", slot, "MIGRATING", target)
            keys = _do(masters[source], "CLUSTER", "GETKEYSINSLOT", slot, 1000)
            if some := [k for k in keys if first and first.encode() in k]:
                move_some(some, source, target)

        def finish(source: str, target: str) -> None:
            while keys := _do(masters[source], "CLUSTER", "GETKEYSINSLOT", slot, 100):
                move_some(keys, source, target)
            for nid in sorted(masters, key=lambda n: n != target):  # the target first
                _do(masters[nid], "CLUSTER", "SETSLOT", slot, "NODE", target)

        yield lambda first: move(src, dst, first)
        finish(src, dst)
        move(dst, src, "")  # back, whole
        finish(dst, src)
    finally:
        for client in masters.values():
            client.close()


async def _models(cluster: LocalCluster, prefix: str, version: str) -> Dump:
    """`dump` of every master of the cluster: a scan reads one node."""
    out: Dump = {}
    for node in cluster.nodes:
        client = aioredis.Redis.from_url(node.url)
        try:
            if (await client.role())[0] == b"master":
                out |= await dump(client, prefix, version)
        finally:
            await client.aclose()
    return out


@pytest.mark.parametrize(
    "first",
    [
        ":checkpoint",
        pytest.param(":index:by_time", marks=pytest.mark.slow),  # 3.5 s each
        pytest.param(":timeline:", marks=pytest.mark.slow),
    ],
)
async def test_a_commit_while_its_partitions_slot_moves_writes_all_of_it_or_nothing(
    local_cluster: LocalCluster, first: str
) -> None:
    """The partition's keys named `first` move ahead of the others, then the projector
    commits a story's second update: all its keys declared, the commit waits for the
    slot to settle rather than writing what it can reach. After the move the read models
    equal a rebuild's: before, the index kept the story's first update time, or the
    checkpoint stayed short of the second update, for good. An append meanwhile, which
    reaches the partition's seal marker (not declared) before writing, is refused as the
    cluster moving a slot, nothing written, not as a server error."""
    log = await Log.connect(local_cluster.url, prefix=f"t{uuid.uuid4().hex[:10]}", partitions=4)
    app = await projector(log, local_cluster.url)
    stories = one_a_partition(log)
    try:
        await log.append([encode(update(subject=s, id=f"{s}-1")) for s in stories])
        await settle(app)
        await log.append([encode(update(subject=stories[0], id="second"))])
        with capture_logs() as logs, moving(local_cluster, log.keys.log(0)) as move:
            move(first)
            assert await app.runner.step() == 0  # stories[0]'s second: not committed yet
            with pytest.raises(UNREACHABLE):  # TRYAGAIN, or redis-py's TTL after it
                await log.append([encode(update(subject=stories[0], id="third"))])
        said = [(e["log_level"], e["event"]) for e in logs if e["log_level"] != "info"]
        assert said and all(level == "warning" for level, _ in said), said
        assert any("Redis Cluster" in event for _, event in said), said
        await settle(app)
        live = await _models(local_cluster, log.keys.prefix, "v1")
        rebuilt = await rebuild_all(log, log.keys)
        assert live == await _models(local_cluster, log.keys.prefix, rebuilt.new)
        assert [u.id for u in await log.read_story(stories[0])] == [f"{stories[0]}-1", "second"]
    finally:
        await app.client.aclose()
        await log.close()
