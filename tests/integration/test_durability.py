"""Acknowledged means durable: SIGKILL the server, restart it, every update is there."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from dateline.store.layout import Keys
from dateline.store.log import Log
from tests.conftest import REDIS62, VALKEY, start_server
from tests.factories import encode, update


@pytest.mark.parametrize("kind", [VALKEY, REDIS62])
async def test_acknowledged_updates_survive_sigkill(tmp_path: Path, kind: str) -> None:
    server = start_server(kind, tmp_path, fsync="always")
    keys = Keys("dateline", 4)
    acknowledged: list[str] = []
    try:
        log = Log(aioredis.Redis.from_url(server.url), keys)
        for _ in range(5):
            results = await log.append([encode(update(subject=f"s{i % 7}")) for i in range(200)])
            assert {r.status for r in results} == {"appended"}
            acknowledged += [r.id for r in results if r.id]
        await log.close()
    finally:
        server.kill()  # SIGKILL: no shutdown, no final fsync

    restarted = start_server(kind, tmp_path, fsync="always")
    try:
        log = Log(aioredis.Redis.from_url(restarted.url), keys)
        found = [r.id for s in range(7) for r in await log.read_story(f"s{s}")]
        assert sorted(found) == sorted(acknowledged)
        [more] = await log.append([encode(update(subject="s0"))])
        assert more.version == len(await log.read_story("s0"))
        await log.close()
    finally:
        restarted.stop()
