"""Blue/green replay: readers never see a half-built version; projectors follow the switch."""

from __future__ import annotations

import asyncio
import multiprocessing

import msgspec
import pytest
import redis.asyncio as aioredis

from dateline.domain import project
from dateline.domain.state import StoryState
from dateline.projector import replay as replay_module
from dateline.projector.ops import Rebuilt, rebuild_story
from dateline.projector.replay import ReplayFailed, Workers, drop_version, rebuild_all
from dateline.store.connection import is_cluster
from dateline.store.layout import group_of
from dateline.store.log import Log
from dateline.store.readmodels import SHAPE, ReadModels
from dateline_schemas import Update
from tests.factories import encode, update
from tests.integration.test_projector import projector, rebuilt, settle, stored_state
from tests.models_help import dump
from tests.projection_helpers import hanoi
from tests.raw import data, text

STORIES = [f"story-{i:02d}" for i in range(30)]
HANOI_STORY = "hanoi-summit-2019"


pytestmark = pytest.mark.cluster_too  # each server, and the local cluster


async def read_active(log: Log, story: str) -> tuple[str, bytes | None]:
    """What a dashboard does: resolve the active version, then read the story."""
    active = text(await log.redis.get(f"{log.keys.prefix}:rm:active"))
    raw = await log.redis.get(ReadModels(log.keys, active).story(story))
    return active, None if raw is None else data(raw)


async def test_replay_while_serving(log: Log, url: str) -> None:
    app = await projector(log, url)
    await log.append(
        [encode(update(subject=s, data={"title": f"{s} {i}"})) for i in range(5) for s in STORIES]
    )
    await settle(app)
    # A bug fixed since: v1 holds a wrong title for one story. The rebuild must repair it.
    broken = await stored_state(app, "story-00")
    broken.title = "wrong"
    pipe = app.client.pipeline(transaction=True)
    app.models.write(pipe, await stored_state(app, "story-00"), broken)
    await pipe.execute()
    served = {s: (await read_active(log, s))[1] for s in STORIES}

    reads: list[tuple[str, str, bytes | None]] = []
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            for s in STORIES:
                version, raw = await read_active(log, s)
                reads.append((version, s, raw))
            await asyncio.sleep(0)

    appended = {"done": False}

    def progress(n: int) -> None:
        if not appended["done"]:  # appends land while the replay runs
            appended["done"] = True
            asyncio.get_running_loop().create_task(
                log.append([encode(update(subject="story-01", data={"title": "late"}))])
            )

    reading = asyncio.create_task(reader())
    result = await rebuild_all(log, log.keys, progress, batch=7)
    await asyncio.sleep(0.05)
    stop.set()
    await reading

    assert (result.old, result.new, result.stories) == ("v1", "v2", 30)
    # Its catch-up consumer left v2's members: the projectors that move on count without it.
    assert await log.redis.zrange(f"{log.keys.prefix}:projector-v2:members", 0, -1) == []
    assert {v for v, _, _ in reads} == {"v1", "v2"}
    for version, story, raw in reads:
        assert raw is not None, (version, story)  # never a missing or half-built state
        if version == "v1":
            assert raw == served[story]  # v1 keeps serving what it had, untouched
    v2 = ReadModels(log.keys, "v2")
    for story in STORIES:
        state = await v2.read_state(log.redis, story)
        if story != "story-01":  # its late update may still be on its way through v2's group
            assert state == await rebuilt(log, story), story
    assert (
        msgspec.json.decode(data(await log.redis.get(v2.story("story-00"))))["title"]
        == "story-00 4"
    )
    assert await log.redis.get(v2.shape) == str(SHAPE).encode()  # built with today's shape

    # The old projector notices the switch and moves on to v2.
    stop_app = asyncio.Event()
    app.watch_s = 0.05
    running = asyncio.create_task(app.run(stop_app))
    await log.append([encode(update(subject="story-02", data={"title": "after switch"}))])
    for _ in range(100):
        found = await log.redis.get(v2.story("story-02"))
        if found and msgspec.json.decode(data(found))["title"] == "after switch":
            break
        await asyncio.sleep(0.05)
    assert (
        msgspec.json.decode(data(await log.redis.get(v2.story("story-02"))))["title"]
        == "after switch"
    )
    late = msgspec.json.decode(data(await log.redis.get(v2.story("story-01"))))
    assert late["title"] == "late"
    leases = [f"{log.keys.prefix}:projector-v2:lease:p{p}" for p in range(log.keys.partitions)]
    assert [await log.redis.get(k) for k in leases] == [b"p1"] * log.keys.partitions
    stop_app.set()
    await running

    dropped = await drop_version(log.redis, log.keys, "v1", grace_s=1)
    assert dropped > 30
    assert [k async for k in log.redis.scan_iter(match=f"{log.keys.prefix}:rm:v1:*")] == []


async def test_a_replay_with_a_failing_story_does_not_switch(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A story that cannot be projected keeps readers on the current, complete version."""
    app = await projector(log, url)
    await log.append([encode(update(subject=s)) for s in STORIES[:5]])
    await settle(app)

    def broken(story: str, updates: list[Update]) -> StoryState:
        if story == "story-03":
            raise RuntimeError("projection bug")
        return project(story, updates)  # the real one, as the rebuild imported it

    monkeypatch.setattr(replay_module, "project", broken)
    with pytest.raises(ReplayFailed, match="story-03") as info:
        await rebuild_all(log, log.keys)
    assert info.value.failed == {"story-03": "RuntimeError('projection bug')"}
    assert await log.redis.get(f"{log.keys.prefix}:rm:active") == b"v1"
    assert (await stored_state(app, "story-03")).version == 1  # v1 still serves it
    await app.client.aclose()


async def _models_of(log: Log, version: str) -> dict[str, object]:
    """Every key of a projection version with what it holds, for comparing two builds."""
    models, found = ReadModels(log.keys, version), dict[str, object]()
    async for key in log.redis.scan_iter(match=f"{models.base}:*"):
        name = text(key)[len(models.base) :]
        kind = text(await log.redis.type(key))
        if kind == "string":
            found[name] = await log.redis.get(key)
        elif kind == "list":
            found[name] = await log.redis.lrange(key, 0, -1)
        elif kind == "hash":
            found[name] = await log.redis.hgetall(key)
        elif kind == "zset":
            found[name] = await log.redis.zrange(key, 0, -1, withscores=True)
    return found


async def test_the_catch_up_reads_what_is_there_and_never_waits_for_more(
    log: Log, url: str
) -> None:
    """What is appended after its last read, the projectors project through the new group
    once it is switched: a read that waited would only delay the switch (a read told to
    wait 50 ms on an idle server took up to 150: its timeouts are checked ten times a
    second)."""
    if is_cluster(log.redis):
        pytest.skip("on a cluster no read of the runner blocks (`POLL_S`)")
    await log.append([encode(update(subject=s, data={"title": s})) for s in STORIES])
    reads: list[str] = []
    watcher = aioredis.Redis.from_url(url)
    try:
        async with watcher.monitor() as monitor:  # on once the server said OK to it

            async def watch() -> None:
                async for event in monitor.listen():
                    command = str(event["command"])
                    if command.startswith(f"XREADGROUP GROUP {group_of('v2')} "):
                        reads.append(command)
                    elif command == f"SET {log.keys.active} v2":
                        return  # the switch: after the catch-up's last read

            watching = asyncio.create_task(watch())
            late = {"done": False}

            def progress(n: int) -> None:  # one update to catch up with
                if not late["done"]:
                    late["done"] = True
                    asyncio.get_running_loop().create_task(
                        log.append([encode(update(subject="story-01", data={"title": "late"}))])
                    )

            result = await rebuild_all(log, log.keys, progress, batch=7)
            await asyncio.wait_for(watching, 5)
    finally:
        await watcher.aclose()
    assert result.caught_up == 1
    assert reads, "the catch-up read nothing"
    assert not [r for r in reads if " BLOCK " in r], reads


async def test_worker_processes_build_what_one_process_builds(log: Log, url: str) -> None:
    await log.append(
        [
            encode(update(subject=s, data={"title": f"{s} {i}"}, id=f"{s}-{i}"))
            for i in range(4)
            for s in STORIES
        ]
    )
    progress: list[int] = []
    one = await rebuild_all(log, log.keys)
    workers = Workers(url, processes=2, min_updates=0, stories_a_job=7)
    split = await rebuild_all(log, log.keys, progress.append, workers=workers)
    assert (one.new, split.new) == ("v2", "v3")
    assert (split.stories, split.updates) == (30, 120)
    assert sum(progress) == 120  # five jobs of 7 stories or fewer, each reported once done
    built_once, built_split = await _models_of(log, "v2"), await _models_of(log, "v3")
    assert len([k for k in built_once if ":story:" in k]) == 30
    assert built_split == built_once


async def test_workers_started_early_are_stopped_when_the_setup_fails(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool starts before the rebuild lists its stories: a failure there leaves no
    worker process behind, and no version switched to."""
    await log.append([encode(update(subject=s)) for s in STORIES[:4]])

    async def lost(*_: object) -> list[str]:
        raise ConnectionError("the server went away")

    monkeypatch.setattr(replay_module, "story_ids", lost)
    workers = Workers(url, processes=2, min_updates=0)
    with pytest.raises(ConnectionError, match="went away"):
        await rebuild_all(log, log.keys, workers=workers)
    assert multiprocessing.active_children() == []
    assert await log.redis.get(f"{log.keys.prefix}:rm:active") in (None, b"v1")


async def test_a_story_a_worker_cannot_project_stops_the_switch(log: Log, url: str) -> None:
    await log.append([encode(update(subject=s)) for s in STORIES[:10]])
    # A record no projection can read, as a bug in an old writer might have left.
    await log.redis.rpush(log.keys.story("story-04"), b'{"not": "an update"}')
    workers = Workers(url, processes=2, min_updates=0, stories_a_job=3)
    with pytest.raises(ReplayFailed, match="story-04") as info:
        await rebuild_all(log, log.keys, workers=workers)
    assert list(info.value.failed) == ["story-04"]
    assert await log.redis.get(f"{log.keys.prefix}:rm:active") in (None, b"v1")


async def test_story_ids_lists_each_history_once_and_nothing_else(log: Log) -> None:
    """One pass over the keyspace: keys that merely look like a history are not stories."""
    await log.append([encode(update(subject=s)) for s in STORIES for _ in range(2)])
    await rebuild_all(log, log.keys)  # read models beside the log: `...:story:<id>` keys too
    prefix, beyond = log.keys.prefix, log.keys.partitions  # a partition this log has not
    await log.redis.rpush(f"{prefix}:{{p{beyond}}}:story:ghost", b"x")
    await log.redis.set(f"{prefix}:{{p0}}:stories:x", b"x")
    assert await replay_module.story_ids(log.redis, log.keys) == STORIES


async def test_dropping_a_version_takes_every_key_of_it_in_batches(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys go a batch a call; each batch, and what is left after the last, is counted."""
    await log.append([encode(update(subject=s)) for s in STORIES])
    await rebuild_all(log, log.keys)
    kept = await rebuild_all(log, log.keys)  # the version it replaces is kept
    models = [k async for k in log.redis.scan_iter(match=log.keys.models(kept.old).all)]
    group = [k async for k in log.redis.scan_iter(match=log.keys.group(group_of(kept.old)).all)]
    assert len(models) > 7
    # Two batches, the second not full: a batch a call, and the rest after the last.
    monkeypatch.setattr(replay_module, "DROP_BATCH", len(models) // 2 + 1)
    assert await drop_version(log.redis, log.keys, kept.old) == len(models) + len(group)
    assert [k async for k in log.redis.scan_iter(match=log.keys.models(kept.old).all)] == []
    assert await log.redis.exists(ReadModels(log.keys, kept.new).story("story-00")) == 1


async def test_a_rebuild_clears_what_a_replay_that_died_left_of_its_version(log: Log) -> None:
    await log.append([encode(update(subject=s)) for s in STORIES[:3]])
    first = await rebuild_all(log, log.keys)
    # A replay of the next version that died half-way: a story no history has, in its keys.
    after = replay_module.next_version(first.new)
    stale = ReadModels(log.keys, after).story("story-gone")
    await log.redis.set(stale, b"{}")
    built = await rebuild_all(log, log.keys)
    assert built.new == after
    assert await log.redis.exists(stale) == 0
    assert await log.redis.exists(ReadModels(log.keys, after).story(STORIES[0])) == 1


async def test_a_story_the_log_lacks_is_not_written_and_one_held_is_taken_out(log: Log) -> None:
    """`replay --story` of an id the log has no update of wrote an empty story at version
    0 into the read models, listed and served as if it were one; a rebuild of every story
    holds none. Now nothing is written, and a story the read models hold without the log
    backing it (what that left, here with statements and items) is taken out whole."""
    models = ReadModels(log.keys, "v1")
    await log.append([encode(update(subject="kept-story"))])
    assert await rebuild_story(log, models, "kept-story") == Rebuilt(1)
    before = await dump(log.redis, log.keys.prefix, "v1")
    assert await rebuild_story(log, models, "never-was") == Rebuilt(0)
    assert await dump(log.redis, log.keys.prefix, "v1") == before
    held = project(HANOI_STORY, hanoi())
    assert held.statements and held.schedule
    async with log.redis.pipeline(transaction=True) as pipe:
        models.write(pipe, StoryState(id=HANOI_STORY), held)
        await pipe.execute()
    assert await dump(log.redis, log.keys.prefix, "v1") != before
    assert await rebuild_story(log, models, HANOI_STORY) == Rebuilt(0, forgotten=True)
    assert await dump(log.redis, log.keys.prefix, "v1") == before


async def test_a_rebuilt_versions_group_is_counted_by_the_server_from_the_start(log: Log) -> None:
    """The new version's group is made where the fold ended and told how many entries
    came before it: the server counts what is appended after at once (Valkey, Redis 7+),
    which `dateline status` reads as the lag, rather than once the group has read to
    the stream's end (until then `XINFO GROUPS` says no lag, and the report reads)."""
    await log.append([encode(update(subject=s)) for s in STORIES])
    built = await rebuild_all(log, log.keys)
    await log.append([encode(update(subject=f"later-{i:02d}")) for i in range(12)])
    lags = []
    for p in range(log.keys.partitions):
        groups = await log.redis.xinfo_groups(log.keys.log(p))
        (info,) = [g for g in groups if text(g["name"]) == group_of(built.new)]
        if "lag" not in info:
            pytest.skip("the server does not count a group's entries (Redis 6.2)")
        lags.append(info["lag"])
    assert sum(lags) == 12, lags
