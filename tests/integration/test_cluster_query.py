"""The query service on a real cluster (3 masters, a replica each), on read models laid
out per partition: a story, the lists merged over the partitions with their paging, the
board and speakers, read-your-writes, a parked story, the doorbell, the live index."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from dateline.domain.positions import Cursor
from dateline.projector.app import Projector
from dateline.query import live
from dateline.query.app import create_app
from dateline.query.reader import Reader
from dateline.store.cluster import LocalCluster
from dateline.store.connection import open_client
from dateline.store.doorbell import SWITCH, Doorbell
from dateline.store.log import Log
from dateline.store.readers import Readers
from dateline.store.readmodels import without_timeline
from tests.factories import encode, update
from tests.integration.serving import serve
from tests.integration.test_cluster_projector import each_node, one_a_partition, projector
from tests.integration.test_projector import failing_on, rebuilt, settings, settle
from tests.integration.test_query import STORY, check_hanoi_boards, flat, public
from tests.projection_helpers import HANOI
from tests.readers import bearer


@pytest.fixture
def log(cluster_log: Log) -> Log:
    return cluster_log


@pytest.fixture
async def api(log: Log, local_cluster: LocalCluster) -> AsyncIterator[httpx.AsyncClient]:
    auth = await bearer(local_cluster.url, log.keys.prefix)
    async with (
        serve(create_app(settings(log), local_cluster.url, poll_s=0.2)) as base,
        httpx.AsyncClient(base_url=base, timeout=30, headers=auth) as client,
    ):
        yield client


@pytest.fixture
async def app(log: Log, local_cluster: LocalCluster) -> AsyncIterator[Projector]:
    found = await projector(log, local_cluster.url, **failing_on("poisoned", 2))
    yield found
    await found.client.aclose()


async def test_reads_on_a_cluster_equal_a_rebuild(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    lines = [x for x in HANOI.read_bytes().splitlines() if x.strip()]
    await log.append(lines)
    others = one_a_partition(log)
    for story in others:  # one after another
        await log.append([encode(update(subject=story, id=f"{story}-0"))])
    await settle(app)
    state = await rebuilt(log, STORY)
    r = await api.get(f"/v1/stories/{STORY}")
    assert r.status_code == 200, r.text
    assert r.json() == public(msgspec.json.decode(msgspec.json.encode(without_timeline(state))))
    timeline = (await api.get(f"/v1/stories/{STORY}/timeline")).json()["items"]
    assert timeline == msgspec.to_builtins(state.timeline)
    # Every partition's stories, merged newest first; a page is the head of the whole.
    everything = (await api.get("/v1/stories")).json()["items"]
    assert len(everything) == 2 + len(others)
    order = [(e["recordedtime"], e["id"]) for e in everything]
    assert order == sorted(order, reverse=True)
    for limit in (1, 3, len(others) + 2):
        page = (await api.get("/v1/stories", params={"limit": limit})).json()["items"]
        assert page == everything[:limit]
    await check_hanoi_boards(api)
    status = (await api.get("/v1/status")).json()
    assert sum(p["length"] for p in status["partitions"]) == len(lines) + len(others)
    # The operations page's trail is read on a cluster too (a point as the process
    # started, the next 5 s on).
    points = (await api.get("/v1/status/lag")).json()["points"]
    assert points and len(points[0]["partitions"]) == log.keys.partitions


async def test_read_your_writes_and_a_parked_story_on_a_cluster(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    [first] = await log.append([encode(update(subject="poisoned", id="p-1"))])
    stepping = asyncio.create_task(settle(app))
    r = await api.get("/v1/stories/poisoned", params={"min_position": first.position})
    await stepping
    assert r.json()["version"] == 1 and r.json()["parked_at"] is None
    [bad] = await log.append([encode(update(subject="poisoned", id="p-2"))])
    await settle(app)
    r = await api.get("/v1/stories/poisoned", params={"min_position": bad.position})
    assert r.status_code == 409, r.text  # parked: says so, and what to do
    assert "dateline dlq redrive poisoned" in r.json()["detail"]
    assert (await api.get("/v1/stories/poisoned")).json()["parked_at"] == bad.position


def _bus_publishes(cluster: LocalCluster) -> tuple[int, int]:
    """Pub/sub messages the nodes sent each other over the cluster bus: (plain, sharded)."""
    plain = sharded = 0
    for info in each_node(cluster, lambda client: client.cluster("INFO")):
        plain += int(info.get("cluster_stats_messages_publish_sent", 0))
        sharded += int(info.get("cluster_stats_messages_publishshard_sent", 0))
    return plain, sharded


async def test_a_doorbell_hears_through_a_cluster_client_nothing_used_yet(
    log: Log, local_cluster: LocalCluster
) -> None:
    """A cluster client maps its slots at its first command: the doorbell may be its
    first user (a query service's store of read models apart from a log on a cluster)."""
    fresh = await open_client(local_cluster.url)
    bell = Doorbell.of(fresh, log.keys, poll_s=0.2)
    subscribed, heard = asyncio.Event(), asyncio.Event()

    def listen(message: bytes | None, live: bool) -> None:
        if live:  # subscribed on every node, then the message
            (heard if message == b"3:1-0" else subscribed).set()

    bell.listeners.append(listen)
    ringing = asyncio.create_task(bell.run())
    try:
        async with asyncio.timeout(10):
            await subscribed.wait()
            await log.redis.spublish(log.keys.changes(3), "3:1-0")
            await heard.wait()
    finally:
        ringing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ringing
        await fresh.aclose()


async def test_the_doorbell_and_the_live_index_on_a_cluster(
    log: Log, app: Projector, local_cluster: LocalCluster
) -> None:
    """Each partition's commits ring its sharded channel: the doorbell hears every one,
    and not one went to every node of the cluster as a plain PUBLISH."""
    client = log.redis
    bell = Doorbell.of(client, log.keys, poll_s=0.2)
    assert len(bell.shards) == log.keys.partitions
    heard: list[bytes | None] = []
    told: list[bool] = []

    def listen(message: bytes | None, live: bool) -> None:
        heard.append(message)
        told.append(live)

    bell.listeners.append(listen)
    ringing = asyncio.create_task(bell.run())
    reader = Reader(client, log.keys, bell)
    try:
        for _ in range(50):  # subscribed on every node
            if True in told:
                break
            await asyncio.sleep(0.1)
        assert True in told
        plain_before, sharded_before = _bus_publishes(local_cluster)
        stories = one_a_partition(log)
        start = Cursor(tuple((0, 0) for _ in range(log.keys.partitions)))
        stream = flat(live.index_events(reader, start))
        await log.append([encode(update(subject=s, id=f"{s}-0")) for s in stories])
        await settle(app)
        seen = set()
        async with asyncio.timeout(10):
            async for push in stream:
                if push.event == "update":
                    seen.add(msgspec.json.decode(push.data)["story"])
                if seen == set(stories):
                    break
        every = {str(p) for p in range(log.keys.partitions)}
        for _ in range(50):  # every partition's commit rang, whichever node it ran on
            if {m.decode().split(":")[0] for m in heard if m} == every:
                break
            await asyncio.sleep(0.1)
        assert {m.decode().split(":")[0] for m in heard if m} == every
        plain, sharded = _bus_publishes(local_cluster)
        assert plain == plain_before  # no commit went to every node
        assert sharded - sharded_before >= log.keys.partitions  # each to its replica
        assert bell.switched is False
        await client.publish(bell.channel, SWITCH)  # the plain channel is heard too
        for _ in range(50):
            if bell.switched:
                break
            await asyncio.sleep(0.1)
        assert bell.switched
    finally:
        ringing.cancel()


async def test_a_revoke_ends_a_readers_token_and_sessions_on_a_cluster(log: Log) -> None:
    """No transaction holds the readers' keys there: sessions are listed before they
    exist, and a revoke drops the credentials before it marks the reader revoked."""
    readers = Readers(log.redis, log.keys.prefix)
    token = await readers.add("desk", "reader")
    grant = await readers.authenticate(token)
    assert grant is not None
    sessions = [await readers.open_session(grant) for _ in range(3)]
    assert all([await readers.session(s) for s in sessions])
    assert await readers.revoke("desk")
    assert await readers.authenticate(token) is None
    assert [await readers.session(s) for s in sessions] == [None, None, None]
    revoked = await readers.get("desk")
    assert revoked is not None and revoked.revoked
