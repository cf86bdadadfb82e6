"""`create_app`: the projector service, wired; nothing is built at import time."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass

import msgspec
import redis.asyncio as aioredis

from dateline.config import Settings
from dateline.consumer import Runner, RunnerConfig
from dateline.keys import Keys
from dateline.log import Log
from dateline.projection import advance, project
from dateline.projector.handler import Advance, Project, ProjectorHandler
from dateline.projector.readmodels import ReadModels

DEFAULT_VERSION = "v1"


class _Subject(msgspec.Struct):
    subject: str


_subject = msgspec.json.Decoder(_Subject).decode


def story_of(raw: bytes) -> str:
    """The story id of a stored record, without decoding the rest of it."""
    return _subject(raw).subject


@dataclass
class Projector:
    client: aioredis.Redis
    log: Log
    models: ReadModels
    handler: ProjectorHandler
    runner: Runner

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.runner.run(stop)
        finally:
            await self.client.aclose()


async def active_version(client: aioredis.Redis, prefix: str) -> str:
    """The projection version dashboards read; set to v1 on first start."""
    await client.set(f"{prefix}:rm:active", DEFAULT_VERSION, nx=True)
    value = await client.get(f"{prefix}:rm:active")
    return value.decode() if isinstance(value, bytes) else str(value)


async def create_app(
    settings: Settings,
    url: str,
    *,
    version: str | None = None,
    consumer: str | None = None,
    batch: int = 1000,
    advance_fn: Advance = advance,
    project_fn: Project = project,
    client: aioredis.Redis | None = None,
) -> Projector:
    client = client or aioredis.Redis.from_url(url)
    keys = Keys(settings.prefix, settings.partitions)
    log = Log(client, keys)
    await log.check_partitions()
    version = version or await active_version(client, settings.prefix)
    group = f"projector-{version}"
    models = ReadModels(settings.prefix, version)
    handler = ProjectorHandler(client, log, models, group, advance_fn, project_fn)
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    # A dead projector's partitions wait this long before another process takes them over.
    ttl = int(os.environ.get("DATELINE_LEASE_TTL_MS") or 10_000)
    config = RunnerConfig(group=group, consumer=name, batch=batch, lease_ttl_ms=ttl)
    runner = Runner(client, keys, config, handler, story_of)
    return Projector(client, log, models, handler, runner)
