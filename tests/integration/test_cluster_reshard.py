"""A slot of the log moved to another master while the projector works: a resharding.

A slot moves a key at a time (`CLUSTER SETSLOT ... MIGRATING`, `MIGRATE`, then `SETSLOT
... NODE`), as `valkey-cli --cluster reshard` moves it. Meanwhile a script whose keys are
split between the two nodes is refused (TRYAGAIN), and one that reaches a key not
declared, gone already, fails there, its writes before it made. Here the projector's
commit meets a partition whose checkpoint, or index, has gone ahead of its stories."""

from __future__ import annotations

import asyncio
import time
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


class SlotMove:
    """The slot of a key moved from its master to another, as `valkey-cli --cluster
    reshard` moves it: marked migrating and importing, its keys sent `per` at a time,
    then given to the other master (`start`, `finish`); `back` returns it whole."""

    def __init__(self, cluster: LocalCluster, key: str) -> None:
        self.cluster = cluster
        self.masters = _masters(cluster)
        any_node = next(iter(self.masters.values()))
        self.slot = cast(int, _do(any_node, "CLUSTER", "KEYSLOT", key))
        self.source = next(
            nid
            for nid, c in self.masters.items()
            for lo, hi, owner, *_ in _do(c, "CLUSTER", "SLOTS")
            if lo <= self.slot <= hi and owner[2].decode() == nid
        )
        self.target = next(nid for nid in self.masters if nid != self.source)

    def start(self, first: str = "") -> None:
        """Marked moving; the keys whose names hold `first` sent ahead."""
        source, target = self.masters[self.source], self.masters[self.target]
        _do(target, "CLUSTER", "SETSLOT", self.slot, "IMPORTING", self.source)
        _do(source, "CLUSTER", "SETSLOT", self.slot, "MIGRATING", self.target)
        keys = _do(source, "CLUSTER", "GETKEYSINSLOT", self.slot, 1000)
        if some := [k for k in keys if first and first.encode() in k]:
            self._send(some)

    def finish(self, per: int = 100, pause: float = 0.0) -> int:
        """Every other key sent, `pause` s between sends; the slot given to the target.
        How many keys were sent."""
        sent = 0
        source = self.masters[self.source]
        while keys := _do(source, "CLUSTER", "GETKEYSINSLOT", self.slot, per):
            self._send(keys)
            sent += len(keys)
            time.sleep(pause)
        for nid in sorted(self.masters, key=lambda n: n != self.target):  # the target first
            _do(self.masters[nid], "CLUSTER", "SETSLOT", self.slot, "NODE", self.target)
        return sent

    def back(self) -> None:
        self.source, self.target = self.target, self.source
        self.start()
        self.finish()
        for client in self.masters.values():
            client.close()

    def _send(self, keys: list[bytes]) -> None:
        port = self.masters[self.target].connection_pool.connection_kwargs["port"]
        password = self.cluster.password
        _do(
            self.masters[self.source],
            "MIGRATE",
            "127.0.0.1",
            port,
            "",
            0,
            5000,
            "AUTH",
            password,
            "KEYS",
            *keys,
        )


@contextmanager
def moving(cluster: LocalCluster, key: str) -> Iterator[SlotMove]:
    """A `SlotMove` of `key`'s slot, started by the caller, finished on leaving and then
    moved back, so that the session's cluster is as it was."""
    move = SlotMove(cluster, key)
    try:
        yield move
    finally:
        move.finish()
        move.back()


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
            move.start(first)
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


@pytest.mark.slow  # about 10 s
async def test_feeds_and_the_projector_ride_out_a_slot_moved_key_by_key(
    local_cluster: LocalCluster,
) -> None:
    """A feed appends batches over 40 stories and the projector projects them while a
    partition's slot moves, a few keys at a time (the feed appending to that partition
    meanwhile): every update sent is in the log once,
    in gap-free versions, whatever the feed was told meanwhile (it sends a batch again
    until answered, as a feed does), and the read models equal a rebuild's. Nothing
    logged an error."""
    log = await Log.connect(local_cluster.url, prefix=f"t{uuid.uuid4().hex[:10]}", partitions=4)
    app = await projector(log, local_cluster.url)
    stories = [f"story-{i}" for i in range(40)]
    sent: dict[str, list[str]] = {s: [] for s in stories}
    moved = [s for s in stories if log.keys.partition(s) == 0]
    calls: list[tuple[float, float]] = []  # the appends to the moving partition, timed
    stop = asyncio.Event()

    async def feed() -> None:
        n = 0
        while not stop.is_set():
            some = stories[n % 8 :: 8]
            while True:
                began = time.monotonic()
                try:
                    await log.append([encode(update(subject=s, id=f"{s}-{n}")) for s in some])
                    break
                except UNREACHABLE:  # refused, nothing written: sent again
                    await asyncio.sleep(0.05)
                finally:
                    if set(some) & set(moved):
                        calls.append((began, time.monotonic()))
            for story in some:
                sent[story].append(f"{story}-{n}")
            n += 1
            await asyncio.sleep(0.005)

    async def project() -> None:
        while not stop.is_set():
            try:
                await app.runner.step()
            except UNREACHABLE:
                await asyncio.sleep(0.05)

    try:
        with capture_logs() as logs:
            work = [asyncio.create_task(feed()), asyncio.create_task(project())]
            await asyncio.sleep(1.0)
            with moving(local_cluster, log.keys.log(0)) as move:
                began = time.monotonic()
                move.start()
                assert await asyncio.to_thread(move.finish, 3, 0.1) > 10
                ended = time.monotonic()
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*work)
            await settle(app)
        assert [e for e in logs if e["log_level"] == "error"] == []
        # The feed was appending to that partition while its slot moved (whether it was
        # refused meanwhile, or the log's own tries outlasted the move).
        assert any(start < ended and end > began for start, end in calls), (began, ended)
        for story in stories:
            history = await log.read_story(story)
            assert [u.id for u in history] == sent[story], story
            assert [u.version for u in history] == list(range(1, len(history) + 1))
        live = await _models(local_cluster, log.keys.prefix, "v1")
        rebuilt = await rebuild_all(log, log.keys)
        assert live == await _models(local_cluster, log.keys.prefix, rebuilt.new)
    finally:
        stop.set()
        await app.client.aclose()
        await log.close()
