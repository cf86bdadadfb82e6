"""Blue/green rebuild of the story projection from the log, while the current version serves."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis

from dateline.domain import project
from dateline.domain.state import StoryState
from dateline.projector.handler import ProjectorHandler
from dateline.runtime import Runner, RunnerConfig
from dateline.runtime.heap import tune_collector
from dateline.store.connection import described, open_client, sent_by_slot, sent_whole
from dateline.store.doorbell import SWITCH
from dateline.store.layout import Keys, group_of, read_models_pattern, replay_key
from dateline.store.log import Log, story_of
from dateline.store.readmodels import SHAPE, Change, ReadModels, active_version
from dateline.store.seal import Sealing
from dateline_schemas import decode_records

Progress = Callable[[int], None]
T = TypeVar("T")


@dataclass
class ReplayResult:
    old: str
    new: str
    stories: int
    updates: int
    caught_up: int


class ReplayFailed(RuntimeError):
    """Some stories could not be projected: the new version was not switched to."""

    def __init__(self, version: str, failed: dict[str, str]) -> None:
        first = next(iter(failed.items()))
        super().__init__(
            f"{len(failed)} stories could not be projected into {version}, so readers stay "
            f"on the current version (first: {first[0]}: {first[1]})"
        )
        self.version, self.failed = version, failed


def _start(work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    return asyncio.get_running_loop().create_task(work)


async def _histories(client: aioredis.Redis, keys: Keys, chunk: list[str]) -> list[list[bytes]]:
    reads = [("LRANGE", keys.story(s), 0, -1) for s in chunk]
    return cast(list[list[bytes]], await sent_by_slot(client, reads))


class WorkerDied(RuntimeError):
    """A worker process of a rebuild ended without an answer."""


class StoreRestarted(RuntimeError):
    """The store of read models restarted during a rebuild: its last writes may be lost."""


async def _run_id(client: aioredis.Redis) -> str:
    """The server process's id: another after a restart."""
    return str((await client.info("server"))["run_id"])


def next_version(version: str) -> str:
    return f"v{int(version.lstrip('v')) + 1}"


async def story_ids(client: aioredis.Redis, keys: Keys) -> list[str]:
    """Every story with a history in the log. One pass over the keyspace: a pass a
    partition walked all of it eight times, and on the log's server with read models
    and kept versions beside the histories, 130,000 keys took 0.37 to 0.43 s."""
    found = [k.decode() async for k in client.scan_iter(match=keys.stories_match, count=1000)]
    return sorted(keys.stories_in(found))


async def total_updates(client: aioredis.Redis, keys: Keys) -> int:
    return sum([int(await client.xlen(keys.log(p))) for p in range(keys.partitions)])


class _Report:
    """The rebuild's progress in `<prefix>:rm:replay`, for the dashboard's operations page."""

    def __init__(self, client: aioredis.Redis, prefix: str, version: str, total: int) -> None:
        self.client, self.key, self.version, self.total = (
            client,
            replay_key(prefix),
            version,
            total,
        )
        self.done, self.started, self.written = 0, time.monotonic(), 0.0

    async def __call__(self, n: int, state: str = "rebuilding", *, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if not force and now - self.written < 0.5:
            return
        self.written = now
        rate = self.done / max(now - self.started, 1e-9)
        await self.client.hset(
            self.key,
            mapping={
                "version": self.version,
                "done": self.done,
                "total": self.total,
                "rate": f"{rate:.0f}",
                "state": state,
            },
        )
        await self.client.expire(self.key, 3600)


async def _fresh_group(
    client: aioredis.Redis, keys: Keys, group: str, models: ReadModels, views: aioredis.Redis
) -> dict[int, str]:
    """The new version's consumer group, at the end of each partition as it is now."""
    # What comes later is delivered to the group; what came before is folded from histories.
    starts: dict[int, str] = {}
    for p in range(keys.partitions):
        await client.delete(keys.group(group).partition_lease(p))
        with contextlib.suppress(aioredis.ResponseError):  # a replay that died half-way
            await client.xgroup_destroy(keys.log(p), group)
        starts[p], read = "0-0", None
        if await client.exists(keys.log(p)):
            info = await client.xinfo_stream(keys.log(p))
            last = info["last-generated-id"]
            starts[p] = last.decode() if isinstance(last, bytes) else str(last)
            # Told where it stands, the server counts the group's undelivered entries from
            # the start (Valkey, Redis 7+), which `dateline status` reads as the lag; not
            # told, it counts them only once the group has read to the stream's end.
            read = info.get("entries-added")
        await client.xgroup_create(
            keys.log(p), group, id=starts[p], mkstream=True, entries_read=read
        )
    await _unlink_matching(views, models.all)  # leftovers of a replay that died half-way
    return starts


async def _fold_histories(
    log: Log,
    models: ReadModels,
    stories: list[str],
    batch: int,
    on_progress: Progress,
    report: _Report | None = None,
    views: aioredis.Redis | None = None,
) -> tuple[int, dict[str, str]]:
    """Every story folded from its history into `models` (in `views`, the store of read
    models, if apart from the log's server); (updates, stories that failed).

    Folding is this process's work and reading and writing are the server's: the next
    chunk's histories are asked for, and the last chunk's writes sent, before this chunk
    is folded, so the two run side by side (1.15x the rebuild rate, 1M updates, 2 cores).
    A chunk's writes go as one transaction (`sent_whole`): one fsync a chunk under
    `appendfsync always`, not one each 16 KB the server reads of them.
    """
    client, keys = log.redis, log.keys
    store = client if views is None else views
    await log.sealing.refresh(client)
    opened = log.sealing.listed_all
    chunks = [stories[i : i + batch] for i in range(0, len(stories), batch)]
    updates = 0
    failed: dict[str, str] = {}
    reading = _start(_histories(client, keys, chunks[0] if chunks else []))
    writing: asyncio.Task[object] = _start(asyncio.sleep(0))
    try:
        for n, chunk in enumerate(chunks):
            histories = await reading
            if n + 1 < len(chunks):
                reading = _start(_histories(client, keys, chunks[n + 1]))
            await asyncio.sleep(0)  # lets the read go out before folding holds the loop
            changes = []
            for story, history in zip(chunk, histories, strict=True):
                try:
                    state = project(story, decode_records(opened(keys.partition(story), history)))
                except Exception as exc:  # reported by the caller: the switch waits for all
                    failed[story] = described(exc)
                    continue
                changes.append(Change(StoryState(id=story), state, whole_timeline=True))
                updates += len(history)
            await writing
            # The new version starts empty: its keys are written whole.
            writing = _start(sent_whole(store, models.commands(changes).commands))
            await asyncio.sleep(0)
            on_progress(sum(len(h) for h in histories))
            if report is not None:
                await report(sum(len(h) for h in histories))
        await writing
    finally:  # a failed read or write: the other is not left running
        for task in (reading, writing):
            task.cancel()
    return updates, failed


@dataclass(frozen=True)
class Workers:
    """Fold in `processes` worker processes, each with its own connection to `url`.

    Folding is CPU work in one Python process. Workers split the stories between
    them, in jobs (`job_size`): 1,000,000 updates over 10,000 stories in 7.6 s with 2 on
    2 cores, 9.1 s in one process (2026-12-04; the server shares the cores). Starting
    them costs 0.2 to 0.3 s of each core, so below `min_updates` the rebuild stays in
    this process.
    """

    url: str
    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    min_updates: int = 300_000
    stories_a_job: int | None = None
    """None: `job_size` sizes them to the rebuild."""
    views_url: str | None = None
    """The store of read models, if apart from the log's server at `url`."""

    def job_size(self, stories: int, batch: int) -> int:
        """Stories a job. Each job waits for its first chunk's histories and its last
        chunk's writes with nothing to fold, and opens its own connections: jobs of
        1,000 stories rather than 250 rebuilt 1M updates 4% faster with 2 workers
        (`docs/speed.md`). At least `JOBS_A_PROCESS` a process where there are stories
        for them, so that none is left folding alone at the end; at least a chunk of
        `batch`."""
        if self.stories_a_job is not None:
            return self.stories_a_job
        share = -(-stories // (self.processes * JOBS_A_PROCESS))
        return min(max(share, batch), MOST_A_JOB)


JOBS_A_PROCESS = 4
MOST_A_JOB = 1_000


def _fold_job(
    url: str,
    prefix: str,
    partitions: int,
    slotted: bool,
    version: str,
    stories: list[str],
    batch: int,
    seal_key: bytes | None,
    views_url: str | None,
) -> tuple[int, dict[str, str], int]:
    """In a worker process: fold these stories into `version`; (updates, failed, read)."""

    async def work() -> tuple[int, dict[str, str], int]:
        read = 0

        def count(n: int) -> None:
            nonlocal read
            read += n

        client = await open_client(url)
        views = None if views_url is None else await open_client(views_url)
        try:
            keys = Keys(prefix, partitions, slotted)
            log = Log(client, keys, sealing=Sealing(seal_key, keys))
            models = ReadModels(keys, version)
            updates, failed = await _fold_histories(log, models, stories, batch, count, views=views)
        finally:
            await client.aclose()
            if views is not None:
                await views.aclose()
        return updates, failed, read

    return asyncio.run(work())


def _started(workers: Workers) -> ProcessPoolExecutor:
    """The workers' pool, its processes started: each imports dateline (0.2 to 0.3 s of a
    core) while this process sets the rebuild up (its group, its stories), not after."""
    # "spawn": a forked child would share this process's event loop and sockets.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers.processes, mp_context=context, initializer=tune_collector)
    for _ in range(workers.processes):  # a process a task while none is idle yet
        pool.submit(os.getpid)
    return pool


async def _fold_in_workers(
    pool: ProcessPoolExecutor,
    workers: Workers,
    log: Log,
    models: ReadModels,
    stories: list[str],
    batch: int,
    on_progress: Progress,
    report: _Report,
) -> tuple[int, dict[str, str]]:
    loop = asyncio.get_running_loop()
    size = workers.job_size(len(stories), batch)
    updates, failed = 0, {}
    with pool:
        jobs = [
            loop.run_in_executor(
                pool,
                _fold_job,
                workers.url,
                log.keys.prefix,
                log.keys.partitions,
                log.keys.slotted,
                models.version,
                stories[i : i + size],
                batch,
                log.sealing.key,
                workers.views_url,
            )
            for i in range(0, len(stories), size)
        ]
        try:
            for job in asyncio.as_completed(jobs):
                done, failed_here, read = await job
                updates += done
                failed.update(failed_here)
                on_progress(read)
                await report(read)
        except BrokenProcessPool as exc:
            raise WorkerDied(
                "a rebuild worker process died (killed, or out of memory?); nothing was "
                "switched, readers stay on the current version"
            ) from exc
        finally:  # the jobs not yet run are dropped; the failures of the others are seen
            for job in jobs:
                if not job.cancel() and not job.cancelled():
                    job.exception()
    return updates, failed


async def rebuild_all(
    log: Log,
    keys: Keys,
    on_progress: Progress = lambda n: None,
    batch: int = 200,
    workers: Workers | None = None,
    views: aioredis.Redis | None = None,
) -> ReplayResult:
    """Build the next version beside the active one and switch to it. `views`: the store
    of read models, if apart from the log's server (the workers' `views_url` then too)."""
    client = log.redis
    store = client if views is None else views
    since = await _run_id(store) if views is not None else None
    old = await active_version(store, keys.prefix)
    new = next_version(old)
    report = _Report(store, keys.prefix, new, await total_updates(client, keys))
    await report(0, force=True)
    group = group_of(new)
    models = ReadModels(keys, new)
    pool = None
    if workers is not None and workers.processes > 1 and report.total >= workers.min_updates:
        pool = _started(workers)  # before the setup, which its processes' start overlaps
    try:
        starts = await _fresh_group(client, keys, group, models, store)
        # 2. Every story from its history, into the new version's keys.
        stories = await story_ids(client, keys)
    except BaseException:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        raise
    if workers is not None and pool is not None:
        fold = _fold_in_workers(pool, workers, log, models, stories, batch, on_progress, report)
        updates, failed = await fold
    else:
        updates, failed = await _fold_histories(
            log, models, stories, batch, on_progress, report, views
        )
    if failed:
        await report(0, "failed: readers stay on the current version", force=True)
        raise ReplayFailed(new, failed)
    for p, start in starts.items():
        await store.hset(models.region(p).checkpoint, str(p), start)
    await store.set(models.shape, SHAPE)
    # 3. Catch up with what was appended meanwhile, through the new group.
    handler = ProjectorHandler(client, log, models, group, views=views)
    # No read waits for more: what comes after the last read, the projectors project
    # through this group once it is switched. A read told to wait 50 ms on an idle server
    # took 65 to 150 ms (its timeouts are checked ten times a second), 6 to 9% of a
    # rebuild of 200,000 updates.
    runner = Runner(
        client, keys, RunnerConfig(group=group, consumer="replay", block_ms=None), handler, story_of
    )
    caught_up = 0
    while done := await runner.step():
        caught_up += done
        on_progress(done)
        await report(done, "catching up")
    await runner.release_all()  # else the projectors would count it for a lease's time
    if since is not None and await _run_id(store) != since:
        await report(0, "failed: the store of read models restarted", force=True)
        raise StoreRestarted(
            "the store of read models restarted during the rebuild and may have lost its "
            "last second of writes; nothing was switched, readers stay on the current "
            "version: run the replay again"
        )
    # 4. The switch: one SET, so a reader sees the old version or the new, never half.
    # In a store apart, under `everysec`, a crash may lose the writes of the last second;
    # whatever of them survives, what this SET follows survives with it (one AOF, in
    # order), and the projector finds the rest missing by its checkpoints.
    await store.set(keys.active, new)
    await store.publish(models.changes, SWITCH)
    await report(0, f"switched from {old}", force=True)
    return ReplayResult(old, new, len(stories), updates, caught_up)


DROP_BATCH = 1_000
"""Keys a call when a version is dropped: a `DEL` a key took 4.3 to 4.5 s for the 40,000
keys of 10,000 stories, a round trip each. `UNLINK`, so that a long list's memory is
freed beside the server's thread, not in it."""


async def _unlink_matching(server: aioredis.Redis, pattern: str) -> int:
    """Every key that matches, `DROP_BATCH` a call; how many there were."""
    dropped, batch = 0, []
    async for key in server.scan_iter(match=pattern, count=DROP_BATCH):
        batch.append(key)
        if len(batch) >= DROP_BATCH:
            dropped += int(await server.unlink(*batch))
            batch.clear()
    if batch:
        dropped += int(await server.unlink(*batch))
    return dropped


async def drop_read_models(store: aioredis.Redis, prefix: str) -> int:
    """Delete every version of the read models under `prefix` from `store`: how many keys.
    For a log restored from a backup, which they do not derive from."""
    return await _unlink_matching(store, read_models_pattern(prefix))


async def drop_version(
    client: aioredis.Redis,
    keys: Keys,
    version: str,
    grace_s: float = 0.0,
    views: aioredis.Redis | None = None,
) -> int:
    """Delete a version's read models (in `views`, if apart from the log's server) and its
    consumer group, once no projector holds it."""
    group = group_of(version)
    for _ in range(int(grace_s * 10)):
        lease = keys.group(group).partition_lease
        held = [await client.exists(lease(p)) for p in range(keys.partitions)]
        if not any(held):
            break
        await asyncio.sleep(0.1)
    dropped = 0
    store = client if views is None else views
    for server, pattern in ((store, keys.models(version).all), (client, keys.group(group).all)):
        dropped += await _unlink_matching(server, pattern)
    for p in range(keys.partitions):
        with contextlib.suppress(aioredis.ResponseError):
            await client.xgroup_destroy(keys.log(p), group)
    return dropped
