"""Fixtures of the integration tests alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from dateline.runtime.wakes import Wakes
from dateline.store.log import Log
from tests.conftest import fresh_log
from tests.projection_helpers import HANOI


@pytest.fixture
async def source(redis_url: str) -> AsyncIterator[Log]:
    """A log of its own on each server, to move or back up."""
    async with fresh_log(aioredis.Redis.from_url(redis_url)) as found:
        yield found


@pytest.fixture
def cli_prefix(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A prefix of its own, 4 partitions, for a command run in process (click's
    `CliRunner`) on the test's server; its keys deleted after. (The process's logging is
    left alone for every test: `tests/conftest.py`.)"""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    for name, value in (("REDIS_URL", redis_url), ("DATELINE_PREFIX", prefix)):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATELINE_PARTITIONS", "4")

    async def clean() -> None:
        client = aioredis.Redis.from_url(redis_url)
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            await client.delete(key)
        await client.aclose()

    try:
        yield prefix
    finally:
        asyncio.run(clean())


async def hanoi_in(log: Log) -> list[str]:
    """The Hanoi example appended to `log`; the stories it names, sorted."""
    lines = [x for x in HANOI.read_bytes().splitlines() if x.strip()]
    results = await log.append(lines)
    assert {r.status for r in results} == {"appended"}
    return sorted({r.subject for r in results if r.subject is not None})


@pytest.fixture(autouse=True)
async def _waiters_stopped(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Every runner's waiters (a runner on a cluster) stopped when its test ends.

    A test that closes its client without `release_all` would leave them running on the
    session's event loop for up to `LEFT_S`, failing on what the next test deleted: a
    warning in that test's output and a count in its `dateline_partitions_polled`."""
    made: list[Wakes] = []
    real = Wakes.__init__

    def recorded(self: Wakes, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Wakes, "__init__", recorded)
    yield
    for wakes in made:
        await wakes.close()
