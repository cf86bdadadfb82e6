"""The projector on a real cluster (3 masters, a replica each): a partition's commit in
its slot, batches over partitions committed side by side, reads per partition polled,
leases shared by two processes, a poison update parked; the read models equal a fold of
the log, and each partition's checkpoint is its stream's last entry."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from dateline.projector.app import Projector, create_app
from dateline.projector.ops import redrive
from dateline.projector.replay import Workers, rebuild_all
from dateline.store.cluster import LocalCluster
from dateline.store.log import Log
from dateline.store.readmodels import ReadModels, read_checkpoints
from tests.e2e.processes import DATELINE, background
from tests.factories import encode, update
from tests.integration.test_projector import (
    check_leases,
    failing_on,
    rebuilt,
    settings,
    settle,
    stored_state,
)
from tests.models_help import hash_all
from tests.projection_helpers import HANOI, HANOI_UPDATES, HANOI_VERSION
from tests.raw import entries_of

T = TypeVar("T")


@pytest.fixture
def log(cluster_log: Log) -> Log:
    return cluster_log


async def projector(log: Log, url: str, name: str = "p1", **kw: Any) -> Projector:
    app = await create_app(settings(log), url, consumer=name, **kw)
    assert app.runner.polls, "found to be on a cluster, by itself"
    app.runner.config = dataclasses.replace(app.runner.config, retry_delay_s=0.0)
    return app


def one_a_partition(log: Log) -> list[str]:
    by_part: dict[int, str] = {}
    n = 0
    while len(by_part) < log.keys.partitions:
        by_part.setdefault(log.keys.partition(f"story-{n}"), f"story-{n}")
        n += 1
    return [by_part[p] for p in range(log.keys.partitions)]


async def heads(log: Log) -> dict[int, str]:
    found = {}
    for p in range(log.keys.partitions):
        last = entries_of(await log.redis.xrevrange(log.keys.log(p), count=1))
        if last:
            found[p] = last[0][0].decode()
    return found


async def test_read_models_on_a_cluster_equal_a_fold_of_the_log(
    local_cluster: LocalCluster, log: Log
) -> None:
    stories = one_a_partition(log)
    app = await projector(log, local_cluster.url)
    try:
        lines = [x for x in HANOI.read_bytes().splitlines() if x.strip()]
        for start in range(0, len(lines), 5):  # batches over every partition, too
            batch = [encode(update(subject=s, id=f"{s}-{start}")) for s in stories]
            await log.append(lines[start : start + 5] + batch)
            await settle(app)
        for story in ["hanoi-summit-2019", *stories]:
            assert await stored_state(app, story) == await rebuilt(log, story), story
        index = await hash_all(log.redis, app.models, lambda r: r.index)
        assert {k.decode() for k in index} == {"hanoi-summit-2019", "cohen-hearing-2019", *stories}
        assert await read_checkpoints(log.redis, app.models) == await heads(log)
    finally:
        await app.client.aclose()


def each_node(cluster: LocalCluster, ask: Callable[[redis.Redis], T]) -> list[T]:
    """`ask` of every node of the cluster, each through a client of its own."""
    found = []
    for node in cluster.nodes:
        client = redis.Redis.from_url(node.url)
        try:
            found.append(ask(client))
        finally:
            client.close()
    return found


def _keys_asked(cluster: LocalCluster) -> int:
    """`COMMAND GETKEYS` calls every node of the cluster has answered so far."""
    stats = each_node(cluster, lambda client: client.info("commandstats"))
    return sum(int(s.get("cmdstat_command|getkeys", {}).get("calls", 0)) for s in stats)


async def test_a_projectors_reads_on_a_cluster_ask_no_node_for_their_keys(
    local_cluster: LocalCluster, log: Log
) -> None:
    """redis-py asks a node `COMMAND GETKEYS` for a command whose keys move, unless the
    client finds them itself (`store.connection._LocalKeys`): a group read each a
    partition a cycle asked, a round trip of its own before the read."""
    stories = one_a_partition(log)
    app = await projector(log, local_cluster.url)
    try:
        await app.runner.step()  # leases taken, groups made
        before = _keys_asked(local_cluster)
        await log.append([encode(update(subject=s, id=f"{s}-0")) for s in stories])
        await settle(app)
        assert _keys_asked(local_cluster) == before
        assert (await stored_state(app, stories[0])).version == 1
    finally:
        await app.client.aclose()


async def test_two_projectors_share_a_clusters_partitions(
    local_cluster: LocalCluster, log: Log
) -> None:
    stories = one_a_partition(log)
    first = await projector(log, local_cluster.url, "p1")
    second = await projector(log, local_cluster.url, "p2")
    try:
        await first.runner.step()  # alone: takes every partition
        await second.runner.step()
        await check_leases(first, second)  # the first hands half over (`holders`: a GET each)
        half = log.keys.partitions // 2
        assert sorted(second.runner.owned) == list(range(half, log.keys.partitions))
        for v in range(3):
            await log.append([encode(update(subject=s, id=f"{s}-{v}")) for s in stories])
            await settle(first, second)
        assert sorted(first.runner.owned) == list(range(half))
        for story in stories:
            assert (await stored_state(first, story)).version == 3
        assert await read_checkpoints(log.redis, first.models) == await heads(log)
    finally:
        await first.client.aclose()
        await second.client.aclose()


async def test_a_poison_update_is_parked_on_a_cluster(
    local_cluster: LocalCluster, log: Log
) -> None:
    """The dead letter, then the acknowledgement (no transaction spans their slots); the
    story's later updates wait behind it, the others' go on, the checkpoint passes it."""
    stories = one_a_partition(log)
    bad = stories[3]
    app = await projector(log, local_cluster.url, **failing_on(bad, 2))
    try:
        for v in range(4):
            await log.append([encode(update(subject=s, id=f"{s}-{v}")) for s in stories])
            await settle(app)
        parked = await app.runner.dead.parked()
        assert list(parked) == [bad]
        letters = await app.runner.dead.entries(bad)
        assert [doc["behind"] for _, doc in letters] == ["", parked[bad], parked[bad]]
        assert (await stored_state(app, bad)).version == 1
        for story in stories:
            if story != bad:
                assert (await stored_state(app, story)).version == 4
        assert await read_checkpoints(log.redis, app.models) == await heads(log)
        for p in range(log.keys.partitions):
            pending = await log.redis.xpending(log.keys.log(p), app.models.group)
            assert pending["pending"] == 0
        # The fix landed: a redrive rebuilds the story and releases it, letters and all.
        assert await redrive(log, app.models, app.runner.dead, bad) == (4, 3)
        assert await app.runner.dead.parked() == {}
        assert await app.runner.dead.entries(bad) == []
        assert (await stored_state(app, bad)).version == 4
    finally:
        await app.client.aclose()


async def test_a_rebuild_on_a_cluster_equals_the_live_read_models(
    local_cluster: LocalCluster, log: Log
) -> None:
    """`rebuild_all` into a new version (in this process, and in two worker processes),
    then the switch: every story, the index and each checkpoint as the live projector
    has them."""
    stories = one_a_partition(log)
    app = await projector(log, local_cluster.url)
    try:
        await log.append([x for x in HANOI.read_bytes().splitlines() if x.strip()])
        for v in range(3):
            await log.append([encode(update(subject=s, id=f"{s}-{v}")) for s in stories])
        await settle(app)
        one = await rebuild_all(log, log.keys)
        workers = Workers(local_cluster.url, processes=2, min_updates=0, stories_a_job=3)
        split = await rebuild_all(log, log.keys, workers=workers)
        assert (one.new, split.new) == ("v2", "v3")
        assert await log.redis.get(log.keys.active) == b"v3"
        for version in ("v2", "v3"):
            built = ReadModels(log.keys, version)
            for story in ["hanoi-summit-2019", *stories]:
                assert await built.read_state(log.redis, story) == await stored_state(app, story)
            index = await hash_all(log.redis, built, lambda r: r.index)
            assert index == await hash_all(log.redis, app.models, lambda r: r.index)
            assert await read_checkpoints(log.redis, built) == await heads(log)
    finally:
        await app.client.aclose()


def test_the_projector_and_on_calls_commands_on_a_cluster(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    """`dateline projector` finds the cluster by itself; `status`, `story`, `dlq`,
    `replay` (a story, and every story) work there as on one server."""
    env = {
        **os.environ,
        "REDIS_URL": local_cluster.url,
        "DATELINE_PREFIX": f"c{uuid.uuid4().hex[:8]}",
    }

    def dateline(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            [str(DATELINE), *args], env=env, input=stdin, capture_output=True, check=False
        )
        assert done.returncode == 0, (args, done.stderr.decode())
        return done

    dateline("publish", "-", stdin=HANOI.read_bytes())
    with background(["projector"], env, tmp_path / "projector.log"):
        for _ in range(300):
            report = json.loads(dateline("status", "--json").stdout)
            if sum(p["lag"] for p in report["partitions"]) == 0 and all(
                p["checkpoint"] for p in report["partitions"] if p["length"]
            ):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the projector did not catch up: {report}")
        story = json.loads(dateline("story", "hanoi-summit-2019", "--json").stdout)
        assert story["version"] == HANOI_VERSION and story["parked_at"] is None
        assert b"no parked updates" in dateline("dlq", "list").stdout.lower()
        one = dateline("replay", "stories", "--story", "hanoi-summit-2019").stdout
        assert (
            one
            == f"stories/hanoi-summit-2019: rebuilt from the log to version {HANOI_VERSION}\n".encode()
        )
        rebuilt = dateline("replay", "stories", "--processes", "1").stdout.decode()
        assert rebuilt.startswith(f"stories: v1 -> v2: 2 stories, {HANOI_UPDATES} updates"), rebuilt
        report = json.loads(dateline("status", "--json").stdout)
        assert report["projection"]["active"] == "v2"
        again = json.loads(dateline("story", "hanoi-summit-2019", "--json").stdout)
        assert again == story
