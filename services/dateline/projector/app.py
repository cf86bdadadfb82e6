"""`create_app`: the projector service, wired; nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from dateline.domain import advance_in_place, project
from dateline.projector.commit import kept
from dateline.projector.handler import ProjectorHandler
from dateline.projector.plan import Advance, Project
from dateline.runtime import Runner, RunnerConfig
from dateline.store import functions
from dateline.store.config import Settings, SettingsError
from dateline.store.connection import UNREACHABLE, is_cluster, open_client
from dateline.store.layout import ModelKeys, group_of
from dateline.store.log import Log, log_keys, story_of
from dateline.store.readmodels import SHAPE, ReadModels, active_version, stamped_shape
from dateline.store.seal import Sealing, seal_at_start

logger = structlog.get_logger("dateline.projector")


@dataclass
class Projector:
    """The service: a runner for the active projection version, moved on when it switches."""

    client: aioredis.Redis
    log: Log
    models: ReadModels
    handler: ProjectorHandler
    runner: Runner
    rewire: Callable[[str], Awaitable[Projector]]
    watch_s: float = 1.0
    views: aioredis.Redis | None = None
    """The store of read models, if apart from the log's server (`DATELINE_VIEWS_URL`)."""

    @property
    def store(self) -> aioredis.Redis:
        """Where the read models are: the views store, or the log's server."""
        return self.client if self.views is None else self.views

    async def run(self, stop: asyncio.Event) -> None:
        app = self
        try:
            while not stop.is_set():
                halt = asyncio.Event()
                watcher = asyncio.create_task(app._watch(stop, halt))
                try:
                    await app.runner.run(halt)  # releases its leases when it returns
                finally:
                    watcher.cancel()
                if stop.is_set():
                    break
                version = await active_version(self.store, self.models.prefix)
                logger.info("projection switched", old=app.models.version, new=version)
                app = await self.rewire(version)
        finally:
            await self.client.aclose()
            if self.views is not None:
                await self.views.aclose()

    async def _watch(self, stop: asyncio.Event, halt: asyncio.Event) -> None:
        """Halt the runner on stop, or when `dateline replay` switched the active version."""
        while not stop.is_set():
            try:
                current = await active_version(self.store, self.models.prefix)
            except UNREACHABLE:  # the runner says so; look again in a while
                current = self.models.version
            if current != self.models.version:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.watch_s)
        halt.set()


async def stamp_shape(client: aioredis.Redis, models: ModelKeys) -> int:
    """Stamp a version nothing has written yet with `SHAPE`; return the version's shape.

    An older shape is logged as a warning: the version lacks what this projector's
    readers expect (the query service falls back where it can) until a replay.
    """
    shape = await stamped_shape(client, models)
    if shape is None:
        await client.set(models.shape, SHAPE)
        return SHAPE
    if shape < SHAPE:
        logger.warning(
            "read models older than this projector; run `dateline replay stories`",
            version=models.version,
            shape=shape,
            expected=SHAPE,
        )
    return shape


async def create_app(
    settings: Settings,
    url: str,
    *,
    version: str | None = None,
    consumer: str | None = None,
    batch: int = 1000,
    advance_fn: Advance = advance_in_place,
    project_fn: Project = project,
    client: aioredis.Redis | None = None,
    views: aioredis.Redis | None = None,
) -> Projector:
    """`views`: a client of `settings.views_url`'s server, if made already (a rewire's)."""
    client = client or await open_client(url)
    if views is None and settings.views_url is not None:
        views = await open_client(settings.views_url)
        if is_cluster(views):
            await views.aclose()
            raise SettingsError(
                "DATELINE_VIEWS_URL: the store of read models is one server (a commit "
                "writes every partition's read models and checkpoints in one step), not a "
                "Redis Cluster; the log may be on one"
            )
    store = client if views is None else views
    keys = await log_keys(client, settings.prefix, settings.partitions)
    key = settings.seal()
    log = Log(client, keys, sealing=Sealing(key, keys))
    for server in {id(c): c for c in (client, store)}.values():
        if not await functions.load(server):
            logger.info("no read library loaded: the server has no functions, or this user may not")
    match await seal_at_start(client, keys, key):
        case "sealed":
            logger.info("the log is sealed: only the append function's records are read")
        case "not sealed":
            logger.warning(
                "the log holds records from before sealing and is not sealed: run "
                "`dateline seal` once ingest and the validator run this release"
            )
        case "no functions":
            logger.warning("the server has no functions: the log's records are not sealed")
        case "no key":
            pass
    await log.sealing.refresh(client, force=True)  # no key for a sealed log: say so now
    version = version or await active_version(store, settings.prefix)
    group = group_of(version)
    shape = await stamp_shape(store, keys.models(version))
    models = ReadModels(keys, version, shape)  # written as the version was built
    states = kept(settings.projector_warm_mb, settings.projector_keep_mb)
    handler = ProjectorHandler(
        client, log, models, group, advance_fn, project_fn, views=views, kept=states
    )
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    # A dead projector's partitions wait this long before another process takes them over.
    config = RunnerConfig(
        group=group, consumer=name, batch=batch, lease_ttl_ms=settings.lease_ttl_ms
    )
    runner = Runner(client, keys, config, handler, story_of, cycle=handler.cycle)
    if not log.cluster:
        # A cluster's failover is hidden by its client's retries: a promoted replica
        # may not have delivered as far as this process was told. Its commits ask.
        handler.delivered = runner.delivered
        handler.tally = runner.tally

    async def rewire(new: str) -> Projector:
        return await create_app(
            settings,
            url,
            version=new,
            consumer=name,
            batch=batch,
            advance_fn=advance_fn,
            project_fn=project_fn,
            client=client,
            views=views,
        )

    return Projector(client, log, models, handler, runner, rewire, views=views)
