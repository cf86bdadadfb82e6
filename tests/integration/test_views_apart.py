"""Read models in a store of their own (`DATELINE_VIEWS_URL`): the projector on two real
servers, the log's and the views store (`appendfsync everysec`, as it runs by default).

Every check compares the read models apart with those a projector of the same log
writes on the log's own server (another version, so another group): byte for byte,
key for key, checkpoints included. A store that lost its last writes (its AOF's tail,
as a crash under `everysec` loses it) is played by putting back a copy taken earlier.
Each case runs with the log on one server and on the local cluster (the store is one
server either way).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from dateline.cli.common import redis_ready
from dateline.domain.positions import Cursor, Position
from dateline.projector import replay
from dateline.projector.app import Projector, create_app
from dateline.projector.handler import ViewsBehind
from dateline.projector.ops import redrive
from dateline.projector.replay import StoreRestarted, Workers, drop_version, rebuild_all
from dateline.query.app import create_app as query_app
from dateline.query.reader import ONE_TRIP, Reader
from dateline.store import functions, pages, scripts
from dateline.store.config import Settings, SettingsError
from dateline.store.connection import open_client
from dateline.store.doorbell import Doorbell
from dateline.store.layout import changes_channel
from dateline.store.log import Log
from dateline.store.readmodels import Command
from tests.conftest import VALKEY, start_server
from tests.factories import encode, update
from tests.integration.serving import serve
from tests.integration.test_projector import failing_on, settle
from tests.integration.test_query import STORY, check_hanoi_reads, publish_hanoi
from tests.models_help import dump
from tests.projection_helpers import HANOI
from tests.raw import data
from tests.readers import bearer

pytestmark = pytest.mark.cluster_too  # the log on each server, and on the local cluster


@pytest.fixture(scope="session")
def views_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second server of our own, for the read models: `everysec`, as by default."""
    server = start_server(VALKEY, tmp_path_factory.mktemp("views"), fsync="everysec")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def views(views_server: str, log: Log) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(views_server)
    try:
        yield client
    finally:
        found = [k async for k in client.scan_iter(match=f"{log.keys.prefix}:*", count=1000)]
        if found:
            await client.delete(*found)
        await client.aclose()


def settings(log: Log, views_url: str | None) -> Settings:
    return Settings(
        None,
        data_dir=Path("."),
        prefix=log.keys.prefix,
        partitions=log.keys.partitions,
        views_url=views_url,
    )


async def projector(
    log: Log, url: str, views_url: str | None, name: str = "p1", **kw: Any
) -> Projector:
    app = await create_app(
        settings(log, views_url), url, consumer=name, client=await open_client(url), **kw
    )
    app.runner.config = dataclasses.replace(app.runner.config, block_ms=20, retry_delay_s=0.0)
    return app


async def later(seconds: float, work: Awaitable[None]) -> None:
    await asyncio.sleep(seconds)
    await work


@contextlib.asynccontextmanager
async def running(app: Projector) -> AsyncIterator[Projector]:
    """`app`, its clients closed after."""
    try:
        yield app
    finally:
        await app.client.aclose()
        if app.views is not None:
            await app.views.aclose()


async def copy(client: aioredis.Redis, prefix: str) -> dict[bytes, bytes]:
    """Every key under `prefix`, as DUMP gives it: what a store held at one moment."""
    return {
        k: cast(bytes, await client.dump(k)) async for k in client.scan_iter(match=f"{prefix}:*")
    }


async def put_back(client: aioredis.Redis, prefix: str, held: dict[bytes, bytes]) -> None:
    """The store as `copy` found it: what a crash that lost the writes since leaves."""
    now = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    if now:
        await client.delete(*now)
    for key, value in held.items():
        await client.restore(key, 0, value)


async def same_as_on_one_server(log: Log, url: str, app: Projector) -> None:
    """The read models apart equal those a projector writes on the log's server."""
    reference = await projector(log, url, None, name="ref", version="ref")
    try:
        await settle(reference)
        assert app.views is not None
        apart = await dump(app.views, log.keys.prefix, app.models.version)
        here = await dump(log.redis, log.keys.prefix, "ref")
        assert apart.keys() == here.keys()
        assert apart == here
    finally:
        await reference.client.aclose()


async def pending(log: Log, group: str) -> int:
    total = 0
    for stream in log.keys.logs():
        total += (await log.redis.xpending(stream, group))["pending"]
    return total


async def hanoi_in_batches(log: Log, app: Projector, size: int = 4) -> None:
    lines = [x for x in HANOI.read_bytes().splitlines() if x.strip()]
    for start in range(0, len(lines), size):
        await log.append(lines[start : start + size])
        await settle(app)


@pytest.fixture
async def app(
    log: Log, url: str, views: aioredis.Redis, views_server: str
) -> AsyncIterator[Projector]:
    async with running(await projector(log, url, views_server)) as app:
        yield app


async def test_the_read_models_apart_equal_those_on_the_log_server(
    log: Log, url: str, app: Projector
) -> None:
    await hanoi_in_batches(log, app)
    await app.runner._pay()
    assert await pending(log, app.models.group) == 0
    assert not [k async for k in log.redis.scan_iter(match=f"{log.keys.prefix}:rm:*")]
    await same_as_on_one_server(log, url, app)


@pytest.mark.one_server("on a cluster the reads go to their slots' nodes: the next case")
async def test_acknowledgements_ride_on_the_next_read(log: Log, app: Projector) -> None:
    """The log's XACKs of a commit go with a later read, no round trip of their own;
    until then the entries stay pending, and nothing else is owed."""
    app.handler.ack_every_s = 0.3
    await app.runner.step()  # the first read
    await log.append([encode(update(id="u1"))])
    await app.runner.step()
    assert await pending(log, app.models.group) == 1
    assert len(app.handler._owed) == 1
    await app.runner.step()  # too soon: not yet
    assert await pending(log, app.models.group) == 1
    await asyncio.sleep(0.3)
    await app.runner.step()
    assert await pending(log, app.models.group) == 0
    assert app.handler._owed == []


async def test_a_commit_apart_from_a_cluster_asks_the_log_how_far_it_is_settled(
    log: Log, app: Projector, views: aioredis.Redis, where: str
) -> None:
    """On a cluster the runner cannot say how far the group delivered (a failover hides
    behind the client's retries): after each commit, a call a partition acknowledges its
    entries and says how far it is settled (`acked.lua`), and the store takes that."""
    if where != "cluster":
        pytest.skip("on one server the runner says how far, and the commit writes it")
    await app.runner.step()
    [result] = await log.append([encode(update(id="u1"))])
    await app.runner.step()
    assert await pending(log, app.models.group) == 0
    assert app.handler._owed == []
    partition = Position.parse(str(result.position)).partition
    mark = await views.hget(app.models.region(partition).checkpoint, str(partition))
    assert isinstance(mark, bytes) and f"{partition}:{mark.decode()}" == str(result.position)
    assert app.handler.landed[partition] == mark.decode()


async def test_a_store_that_lost_its_last_writes_is_filled_again_from_the_log(
    log: Log, url: str, app: Projector, views: aioredis.Redis
) -> None:
    """Writes of two partitions lost, and the commit that finds the loss in one of them
    (the summit's) brings back the other's too (the hearing's, which nothing touches)."""
    lines = [x for x in HANOI.read_bytes().splitlines() if x.strip()]
    assert {log.keys.partition(s) for s in ("hanoi-summit-2019", "cohen-hearing-2019")} == {0, 1}
    await log.append(lines[:20])  # the summit
    await settle(app)
    held = await copy(views, log.keys.prefix)
    await log.append(lines[20:28])  # the summit's next four, the hearing's four
    await settle(app)
    await put_back(views, log.keys.prefix, held)  # the crash: the tail since `held` is gone
    await log.append(lines[28:])  # the summit again, which meets the loss
    await settle(app)
    await same_as_on_one_server(log, url, app)


async def test_a_commit_on_a_store_behind_its_checkpoint_writes_nothing(
    log: Log, app: Projector, views: aioredis.Redis
) -> None:
    await log.append([encode(update(id="u1"))])
    await settle(app)
    held = await copy(views, log.keys.prefix)
    await log.append([encode(update(id="u2"))])
    await settle(app)
    await put_back(views, log.keys.prefix, held)
    await log.append([encode(update(id="u3"))])
    got, _ = await app.runner._read({p.stream: ">" for p in app.runner.owned.values()}, None)
    batches = {app.runner._by_stream(s): e for s, e in got.items()}
    _, _, todo = await app.runner._sort(batches, {})
    with pytest.raises(ViewsBehind):
        await app.handler.handle(todo)
    assert await copy(views, log.keys.prefix) == held


async def test_a_store_behind_with_nothing_new_is_found_at_a_lease_check(
    log: Log, url: str, app: Projector, views: aioredis.Redis
) -> None:
    """No commit meets the lost writes: the lease check compares the checkpoints."""
    await log.append([encode(update(id="u1"))])
    await settle(app)
    held = await copy(views, log.keys.prefix)
    await log.append([encode(update(id=f"u{i}")) for i in range(2, 6)])
    await settle(app)
    await put_back(views, log.keys.prefix, held)
    app.runner._leases_checked = 0.0
    await settle(app)
    await same_as_on_one_server(log, url, app)


async def test_a_store_emptied_under_the_projector_gets_the_read_library_again(
    log: Log, url: str, app: Projector, views: aioredis.Redis
) -> None:
    """A new, empty store in place of the old while the projector runs: it is filled from
    the log, and the read library loaded at start is loaded again, since the query's
    user may not load it (`deploy/views.acl`)."""
    await log.append([encode(update(id="u1"))])
    await settle(app)
    await views.function_flush()
    await put_back(views, log.keys.prefix, {})
    await log.append([encode(update(id="u2"))])
    await settle(app)
    listed = [
        dict(zip(e[::2], e[1::2], strict=True))[b"library_name"]
        for e in await views.function_list()
    ]
    assert scripts.library(*functions.READS).name.encode() in listed
    await same_as_on_one_server(log, url, app)


async def test_a_new_store_is_filled_from_the_log(
    log: Log, url: str, views_server: str, views: aioredis.Redis
) -> None:
    """A deployment that turns `DATELINE_VIEWS_URL` on: the group delivered everything on
    the log's server already; the new store gets it all."""
    here = await projector(log, url, None)
    await hanoi_in_batches(log, here)
    await here.runner.release_all()
    await here.client.aclose()
    async with running(await projector(log, url, views_server)) as app:
        await settle(app)
        await same_as_on_one_server(log, url, app)


async def test_a_crash_between_the_store_and_the_log_applies_nothing_twice(
    log: Log, url: str, app: Projector, views_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store took a batch, the log never got its acknowledgements: the next process
    reads the batch again (pending) and acknowledges it without applying it again."""
    await hanoi_in_batches(log, app)
    dropped: list[Command] = []

    async def dies(streams: dict[int, str], names: dict[int, str] | None = None) -> None:
        # A commit with the log on a cluster acknowledges at once: it dies before that.
        dropped.extend(app.handler.owed())

    monkeypatch.setattr(app.handler, "settle", dies)
    await log.append([encode(update(id="u1")), encode(update(id="u2"))])
    await app.runner.step()
    dropped.extend(app.handler.owed())  # taken and dropped: the process dies with them
    assert dropped
    assert await pending(log, app.models.group) == 2
    for n in list(app.runner.owned):  # the leases, as if they had run out
        await app.runner.leases.release(n)
    await app.client.aclose()
    async with running(await projector(log, url, views_server, name="p2")) as again:
        await settle(again)
        await again.runner._pay()
        assert await pending(log, again.models.group) == 0
        await same_as_on_one_server(log, url, again)


async def test_a_commit_apart_names_the_stories_it_wrote(
    log: Log, app: Projector, views: aioredis.Redis
) -> None:
    """On the store's channel, as on one server's (`test_projector`)."""
    story = update()["subject"]
    async with views.pubsub() as pubsub:
        await pubsub.subscribe(changes_channel(log.keys.prefix))
        [result] = await log.append([encode(update(id="u1"))])
        await settle(app)
        heard = [
            msg["data"].decode()
            for _ in range(10)
            if (msg := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1))
        ]
    assert heard and heard[-1] == f"{result.position} {story}"


async def test_a_parked_update_moves_the_checkpoint_apart(
    log: Log, url: str, views: aioredis.Redis, views_server: str
) -> None:
    story = update()["subject"]
    async with running(await projector(log, url, views_server, **failing_on(story, 2))) as app:
        results = await log.append([encode(update(id=f"u{i}")) for i in range(1, 4)])
        await settle(app)
        await app.runner._pay()
        assert await pending(log, app.models.group) == 0
        partition = log.keys.partition(story)
        mark = await views.hget(app.models.region(partition).checkpoint, str(partition))
        assert mark is not None
        assert cast(bytes, mark).decode() == str(results[-1].position).split(":", 1)[1]


@pytest.fixture
async def api(log: Log, url: str, views_server: str) -> AsyncIterator[httpx.AsyncClient]:
    """The query service reading the store apart (and the log for records and parking)."""
    auth = await bearer(url, log.keys.prefix)
    async with (
        serve(query_app(settings(log, views_server), url, poll_s=0.2)) as base,
        httpx.AsyncClient(base_url=base, timeout=30, headers=auth) as client,
    ):
        yield client


async def test_the_query_service_reads_the_store_apart(
    log: Log, app: Projector, api: httpx.AsyncClient, views_server: str
) -> None:
    await publish_hanoi(log, app)
    await check_hanoi_reads(log, api)
    status = (await api.get("/v1/status")).json()
    assert {p["partition"]: p["lag"] for p in status["partitions"]} == dict.fromkeys(
        range(log.keys.partitions), 0
    )
    servers = [disk["server"] for disk in status["disks"]]  # the log's server(s), the store
    assert len(servers) >= 2 and urlsplit(views_server).netloc in servers
    marks = {p["partition"]: p["checkpoint"] for p in status["partitions"]}
    assert None not in (marks[0], marks[1])  # the summit's and the hearing's, from the store


async def test_a_read_waits_for_the_checkpoint_apart_and_hears_its_doorbell(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    await publish_hanoi(log, app, upto=3)
    concluded = update("dateline.story.concluded", subject=STORY)
    [result] = await log.append([msgspec.json.encode(concluded)])
    started = time.monotonic()
    r, _ = await asyncio.gather(
        api.get(f"/v1/stories/{STORY}", params={"min_position": result.position, "wait": 10}),
        later(0.3, settle(app)),
    )
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["status"]) == (4, "concluded")
    assert time.monotonic() - started < 5  # woken by the commit, not the wait's end


async def test_the_index_stream_reads_the_log_up_to_the_checkpoint_apart(
    log: Log, app: Projector, views: aioredis.Redis
) -> None:
    stories = [f"page-{i}" for i in range(6)]
    applied = await log.append(
        [encode(update(subject=s, id=f"{s}-{n}")) for n in range(4) for s in stories]
    )
    await settle(app)
    await log.append([encode(update(subject=s, id=f"{s}-late")) for s in stories])
    reader = Reader(app.client, log.keys, Doorbell(views, log.keys.prefix), views=views)
    start = Cursor(tuple((0, 0) for _ in range(log.keys.partitions)))
    page = await reader.applied_since(start, ONE_TRIP)
    assert sorted(str(Position(p, sid)) for sid, p, _ in page.found) == sorted(
        str(r.position) for r in applied
    )
    assert not page.more
    assert {msgspec.json.decode(data(e))["version"] for e in page.entries.values()} == {4}
    if reader.cluster:  # the page above was the commands' (`_applied_in_two`) already
        return
    # One XREAD names every partition: the same as the commands a catching-up stream
    # reads (and a live one with the log on a cluster), page by page.
    models = await reader.models()
    logs = log.keys.logs()
    for count in (2, 3, ONE_TRIP):
        starts = ["0-0"] * log.keys.partitions
        assert await reader._applied_apart(models, logs, starts, count) == (
            await reader._applied_in_two(models, logs, starts, count)
        )


async def test_a_parked_update_is_said_parked_apart(
    log: Log, url: str, views_server: str, api: httpx.AsyncClient
) -> None:
    async with running(await projector(log, url, views_server, **failing_on("bad", 2))) as app:
        results = await log.append([encode(update(subject="bad", id=f"bad-{i}")) for i in range(3)])
        await settle(app)
        failed = results[1].position
        answer = await api.get("/v1/stories/bad", params={"min_position": failed, "wait": 0.3})
        assert answer.status_code == 409, answer.text
        assert f"position {failed} is parked" in answer.json()["detail"]
        story = (await api.get("/v1/stories/bad")).json()
        assert (story["version"], story["parked_at"]) == (1, failed)


@pytest.mark.parametrize("processes", [1, 2], ids=["in this process", "in workers"])
async def test_a_replay_builds_and_switches_in_the_store_apart(
    log: Log,
    url: str,
    app: Projector,
    views: aioredis.Redis,
    views_server: str,
    processes: int,
) -> None:
    await hanoi_in_batches(log, app)
    workers = Workers(url, processes, min_updates=0, stories_a_job=1, views_url=views_server)
    result = await rebuild_all(log, log.keys, workers=workers, views=views)
    assert (result.old, result.new) == ("v1", "v2")
    assert await views.get(log.keys.active) == b"v2"
    assert not [k async for k in log.redis.scan_iter(match=f"{log.keys.prefix}:rm:*")]
    await drop_version(log.redis, log.keys, "v1", views=views)
    assert await dump(views, log.keys.prefix, "v1") == {}
    assert "projector-v1" not in {g["name"].decode() for g in await groups_of(log)}
    reference = await projector(log, url, None, name="ref", version="ref")
    async with running(reference):
        await settle(reference)
        built = await dump(views, log.keys.prefix, "v2")
        # A replay starts each partition's checkpoint where its group starts: 0-0 if empty.
        built = {
            k: v
            for k, v in built.items()
            if not k.endswith("checkpoint") or set(v.values()) != {b"0-0"}
        }
        assert built == await dump(log.redis, log.keys.prefix, "ref")


async def test_a_replay_whose_store_restarted_switches_nothing(
    log: Log, app: Projector, views: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await hanoi_in_batches(log, app)
    ids = iter(["before", "after"])

    async def run_id(client: aioredis.Redis) -> str:
        return next(ids)

    monkeypatch.setattr(replay, "_run_id", run_id)
    with pytest.raises(StoreRestarted, match="run the replay again"):
        await rebuild_all(log, log.keys, views=views)
    assert await views.get(log.keys.active) in (None, b"v1")


async def test_a_redrive_rebuilds_the_story_in_the_store_apart(
    log: Log, url: str, views: aioredis.Redis, views_server: str
) -> None:
    fixed = False
    bug = failing_on("bad", 2, on=lambda: not fixed)
    async with running(await projector(log, url, views_server, **bug)) as app:
        await log.append([encode(update(subject="bad", id=f"bad-{i}")) for i in range(3)])
        await settle(app)
        assert (await app.models.read_state(views, "bad")).version == 1
        fixed = True
        assert await redrive(log, app.models, app.runner.dead, "bad", views) == (3, 2)
        assert (await app.models.read_state(views, "bad")).version == 3
        assert not [k async for k in log.redis.scan_iter(match=f"{log.keys.prefix}:rm:*")]


async def groups_of(log: Log) -> list[dict[str, Any]]:
    found = []
    for stream in log.keys.logs():
        if await log.redis.exists(stream):
            found += await log.redis.xinfo_groups(stream)
    return found


async def test_a_store_of_read_models_on_a_cluster_is_refused_with_a_reason(
    redis_url: str, cluster_url: str
) -> None:
    cfg = Settings(None, Path("."), "store-on-a-cluster", 8, views_url=cluster_url)
    client = await open_client(redis_url)
    try:
        with pytest.raises(SettingsError, match=r"one server .* not a Redis Cluster"):
            await create_app(cfg, redis_url, client=client)
    finally:
        await client.aclose()


async def test_the_projectors_readiness_asks_the_store_too(log: Log, views_server: str) -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = aioredis.Redis(port=port, socket_connect_timeout=0.5)
    up = aioredis.Redis.from_url(views_server)
    try:
        said = await redis_ready(log.redis, down)()
        assert said is not None and said.startswith("the read models' store:")
        assert await redis_ready(log.redis, up)() is None
        assert await redis_ready(log.redis)() is None
    finally:
        await down.aclose()
        await up.aclose()


def _one_partition(log: Log, n: int) -> list[str]:
    """`n` stories of one partition: a commit's page is a partition's."""
    stories = [f"pg-{i}" for i in range(200)]
    first = log.keys.partition(stories[0])
    return [s for s in stories if log.keys.partition(s) == first][:n]


async def _messages(pubsub: Any) -> list[bytes]:
    heard = []
    for _ in range(20):
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
        if msg:
            heard.append(msg["data"])
    return heard


@pytest.mark.one_server("on a cluster the runner cannot say how far it was delivered")
async def test_a_commit_apart_carries_its_page_once_it_knows_where_it_began(
    log: Log, app: Projector, views: aioredis.Redis
) -> None:
    """The first commit in a partition names its stories; the next, which begins where
    that one left the checkpoint, carries every entry it applied and the index entries
    it wrote, as a reader of the log and of the store would find them."""
    one, two = _one_partition(log, 2)
    partition = log.keys.partition(one)
    async with views.pubsub() as pubsub:
        await pubsub.subscribe(changes_channel(log.keys.prefix))
        [first] = await log.append([encode(update(subject=one, id="c1"))])
        await settle(app)
        later_ones = await log.append(
            [encode(update(subject=s, id=f"c2-{s}")) for s in (one, two, one)]
        )
        await settle(app)
        heard = await _messages(pubsub)
    last = max((Position.parse(str(r.position)) for r in later_ones), key=lambda p: p.id)
    assert len(heard) == 2
    assert pages.split(heard[0]) == (f"{first.position} {one}".encode(), None)
    news, raw = pages.split(heard[1])
    assert news.decode().split(" ")[0] == str(last)
    assert raw is not None
    page = pages.decode_page(raw)
    after = str(first.position).split(":", 1)[1]
    assert (page.version, page.partition, page.after) == (app.models.version, partition, after)
    assert page.upto == str(last).split(":", 1)[1]
    records = cast(
        list[tuple[bytes, dict[bytes, bytes]]],
        await log.redis.xrange(log.keys.log(partition), f"({after}", page.upto),
    )
    assert [(eid, bytes(r)) for eid, r in page.entries] == [
        (eid.decode(), fields[b"__data__"]) for eid, fields in records
    ]
    index = app.models.region(partition).index
    assert {s: bytes(e) for s, e in page.index.items()} == {
        s: cast(bytes, await views.hget(index, s)) for s in (one, two)
    }


@pytest.mark.one_server("on a cluster the runner cannot say how far it was delivered")
async def test_a_page_that_does_not_begin_at_the_checkpoint_is_not_carried(
    log: Log, app: Projector, views: aioredis.Redis
) -> None:
    """The store vouches for where a page begins: a commit made meanwhile by another
    process (played by a projector that believes its last checkpoint older) is not
    hidden by one."""
    [story] = _one_partition(log, 1)
    partition = log.keys.partition(story)
    await log.append([encode(update(subject=story, id="s1"))])
    await settle(app)
    app.handler.carry[partition] = app.handler.carry[partition]._replace(upto="1-0")
    async with views.pubsub() as pubsub:
        await pubsub.subscribe(changes_channel(log.keys.prefix))
        [result] = await log.append([encode(update(subject=story, id="s2"))])
        await settle(app)
        heard = await _messages(pubsub)
    assert heard == [f"{result.position} {story}".encode()]


@pytest.mark.one_server("on a cluster the runner cannot say how far it was delivered")
async def test_the_carried_pages_give_the_index_stream_what_it_would_read(
    log: Log, app: Projector, views: aioredis.Redis
) -> None:
    """From a cursor at the checkpoints, commit after commit: the page the doorbell
    carried equals the page read from the log and the store, and past the last
    announced checkpoint there is nothing more to read."""
    bell = Doorbell(views, log.keys.prefix)
    reader = Reader(app.client, log.keys, bell, views=views)
    listening = asyncio.create_task(bell.run())
    try:
        for _ in range(100):
            if reader.carried.live:
                break
            await asyncio.sleep(0.01)
        stories = [f"cp-{i}" for i in range(12)]
        await log.append([encode(update(subject=s, id=f"{s}-0")) for s in stories])
        await settle(app)  # each partition's first commit: where the pages begin
        await asyncio.sleep(0.1)
        points = await reader.checkpoints()
        cursor = Cursor(tuple(points.get(p, (0, 0)) for p in range(log.keys.partitions)))
        carried_any = 0
        for n in range(1, 4):
            await log.append([encode(update(subject=s, id=f"{s}-{n}")) for s in stories[n:]])
            await settle(app)
            await asyncio.sleep(0.1)  # the doorbell's messages heard
            carried = await reader.carried_since(cursor)
            read = await reader.applied_since(cursor, ONE_TRIP)
            assert carried is not None
            assert carried.found == read.found
            assert carried.entries == read.entries
            carried_any += len(carried.found)
            for sid, p, _ in read.found:
                cursor = cursor.moved(p, sid)
        assert carried_any == 11 + 10 + 9
        nothing = await reader.carried_since(cursor)
        assert nothing is not None and nothing.found == []
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening


@pytest.mark.one_server("on a cluster the runner cannot say how far it was delivered")
async def test_a_commit_on_the_log_server_carries_its_page_too(log: Log, url: str) -> None:
    """With the read models beside the log, the checkpoint is the script's to compute
    (`advance()`): the page rides when it moves as far as the runner was delivered."""
    one, two = _one_partition(log, 2)
    partition = log.keys.partition(one)
    async with running(await projector(log, url, None, version="beside")) as app:
        async with log.redis.pubsub() as pubsub:
            await pubsub.subscribe(changes_channel(log.keys.prefix))
            await log.append([encode(update(subject=one, id="b1"))])
            await settle(app)
            await log.append([encode(update(subject=s, id=f"b2-{s}")) for s in (one, two)])
            await settle(app)
            heard = await _messages(pubsub)
        assert len(heard) == 2 and pages.split(heard[0])[1] is None
        raw = pages.split(heard[1])[1]
        assert raw is not None
        page = pages.decode_page(raw)
        mark = await log.redis.hget(app.models.region(partition).checkpoint, str(partition))
        assert (page.version, page.upto) == ("beside", cast(bytes, mark).decode())
        assert len(page.entries) == 2 and set(page.index) == {one, two}
