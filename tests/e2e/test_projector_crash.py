"""SIGKILL the projector at 10 random points while 20,000 updates stream in; two
projector processes share the partitions, and one takes the other's when it dies."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis

from dateline.domain import project
from dateline.store.embedded import EmbeddedRedis
from dateline.store.layout import Keys
from dateline.store.log import Log
from dateline.store.readmodels import ReadModels
from tests.conftest import VALKEY, start_server
from tests.factories import encode, update
from tests.models_help import index_entries

DATELINE = Path(sys.executable).parent / "dateline"
STORIES = 200
UPDATES = 20_000


def start_projector(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(DATELINE), "projector"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def publish(log: Log, rng: random.Random) -> None:
    """20,000 updates over 200 stories; one in ten arrives with an earlier event time."""
    for start in range(0, UPDATES, 200):
        batch = []
        for i in range(start, start + 200):
            minute = i // STORIES - (30 if rng.random() < 0.1 else 0)
            batch.append(
                encode(
                    update(
                        "dateline.story.opened",
                        subject=f"story-{i % STORIES:03d}",
                        id=f"u{i}",
                        time=f"2019-02-28T{8 + max(minute, 0) // 60:02d}:{max(minute, 0) % 60:02d}:00Z",
                        data={"title": f"title {i}"},
                    )
                )
            )
        results = await log.append(batch)
        assert {r.status for r in results} == {"appended"}
        await asyncio.sleep(0.2)  # about 21 s in all: the 10 kills land while it runs


async def holds_leases(log: Log, proc: subprocess.Popen[bytes]) -> None:
    owner = f"{socket.gethostname()}-{proc.pid}".encode()
    async with asyncio.timeout(30):
        while await log.redis.get("crash:projector-v1:lease:p0") != owner:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.02)


async def caught_up(log: Log, models: ReadModels) -> None:
    # Polling: the progress is another process's, no event of ours can signal it.
    while await models_versions(log, models) != [UPDATES // STORIES] * STORIES:  # noqa: ASYNC110
        await asyncio.sleep(0.2)


async def models_versions(log: Log, models: ReadModels) -> list[int]:
    return await versions(log, models, [f"story-{s:03d}" for s in range(STORIES)])


async def versions(log: Log, models: ReadModels, stories: list[str]) -> list[int]:
    """Each story's version in the index (0: not there yet)."""
    raw = await index_entries(log.redis, models, stories)
    return [msgspec.json.decode(r)["version"] if r else 0 for r in raw]


def projector_env(server: EmbeddedRedis) -> dict[str, str]:
    """`dateline projector` on this server, 4 partitions, leases that run out in 0.5 s."""
    return {
        **os.environ,
        "REDIS_URL": server.url,
        "DATELINE_PREFIX": "crash",
        "DATELINE_PARTITIONS": "4",
        "DATELINE_LEASE_TTL_MS": "500",
    }


def kill_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()


def run_then_stop(server: EmbeddedRedis, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        asyncio.run(scenario())
    finally:
        server.stop()


async def crash_log(server: EmbeddedRedis) -> Log:
    log = Log(aioredis.Redis.from_url(server.url), Keys("crash", 4))
    await log.check_partitions()
    return log


def test_projector_survives_sigkill_at_random_points(tmp_path: Path) -> None:
    server = start_server(VALKEY, tmp_path / "redis")
    env = projector_env(server)
    rng = random.Random(20190228)
    kills = 0

    async def scenario() -> None:
        nonlocal kills
        log = await crash_log(server)
        models = ReadModels(log.keys, "v1")
        publisher = asyncio.create_task(publish(log, rng))
        proc = start_projector(env)
        progress = []
        try:
            while kills < 10:
                # Kill it while it works: once it holds its leases, at a random moment.
                await holds_leases(log, proc)
                await asyncio.sleep(rng.uniform(0.05, 0.5))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                progress.append(sum(await models_versions(log, models)))
                proc = start_projector(env)
            assert not publisher.done(), "the kills must land while updates stream in"
            # Killed mid-work: projected some, not all, and moving between kills.
            assert 0 < progress[-1] < UPDATES, progress
            assert len(set(progress)) > 3, progress
            await publisher
            async with asyncio.timeout(120):
                await caught_up(log, models)
            for s in range(STORIES):
                story = f"story-{s:03d}"
                live = await models.read_state(log.redis, story)
                assert live == project(story, await log.read_story(story)), story
                assert sorted(e.version for e in live.timeline) == list(range(1, 101))
            pending = [await log.redis.xpending(log.keys.log(p), "projector-v1") for p in range(4)]
            assert [x["pending"] for x in pending] == [0, 0, 0, 0]
            # A running projector (it holds its leases) stops cleanly on SIGTERM.
            await holds_leases(log, proc)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            assert await log.redis.get("crash:projector-v1:lease:p0") is None  # released
        finally:
            kill_all([proc])
            await log.close()

    run_then_stop(server, scenario)
    assert kills == 10


async def holders(log: Log) -> list[bytes | None]:
    return cast(
        list[bytes | None],
        [await log.redis.get(f"crash:projector-v1:lease:p{p}") for p in range(4)],
    )


async def shared_by(log: Log, owners: set[bytes]) -> None:
    """Wait until these processes hold the partitions, as many each."""
    even = [4 // len(owners)] * len(owners)
    async with asyncio.timeout(30):
        while [(await holders(log)).count(o) for o in owners] != even:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def test_two_projectors_share_the_partitions_and_one_takes_over_when_the_other_dies(
    tmp_path: Path,
) -> None:
    server = start_server(VALKEY, tmp_path / "redis")
    env = projector_env(server)

    def owner(proc: subprocess.Popen[bytes]) -> bytes:
        return f"{socket.gethostname()}-{proc.pid}".encode()

    async def scenario() -> None:
        log = await crash_log(server)
        models = ReadModels(log.keys, "v1")
        first, second = start_projector(env), start_projector(env)
        try:
            await shared_by(log, {owner(first), owner(second)})
            stories = [f"story-{s:03d}" for s in range(40)]
            for v in range(5):
                batch = [encode(update(subject=s, id=f"{s}-{v}")) for s in stories]
                assert {r.status for r in await log.append(batch)} == {"appended"}
            first.send_signal(signal.SIGKILL)
            first.wait()
            await shared_by(log, {owner(second)})  # its leases ran out: all four are second's
            for s in stories:
                assert {r.status for r in await log.append([encode(update(subject=s))])} == {
                    "appended"
                }
            async with asyncio.timeout(60):
                while await versions(log, models, stories) != [6] * len(stories):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            for story in stories:
                live = await models.read_state(log.redis, story)
                assert live == project(story, await log.read_story(story)), story
        finally:
            kill_all([first, second])
            await log.close()

    run_then_stop(server, scenario)
