"""Live index pages carried by the doorbell, end to end: the read models in a store of
their own (the embedded default's layout), a sealed log, real processes. A client that
follows live gets what a client reading the same stretch back from the log gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from dateline.store.layout import Keys
from dateline.store.log import Log
from tests.conftest import VALKEY, start_server
from tests.e2e.processes import background, http_service
from tests.e2e.sse import Event, events
from tests.e2e.test_live import read_until, statement
from tests.factories import update
from tests.readers import add_reader, reading

UPDATES = 240
STORIES = [f"paged-{n}" for n in range(12)]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    log_server = start_server(VALKEY, tmp_path_factory.mktemp("pages-log"), fsync="always")
    views = start_server(VALKEY, tmp_path_factory.mktemp("pages-views"))
    env = {**os.environ, "REDIS_URL": log_server.url, "DATELINE_PREFIX": "paged"}
    env["DATELINE_VIEWS_URL"] = views.url
    env["DATELINE_SEAL_KEY"] = secrets.token_hex(32)
    add_reader(env, "paged")
    try:
        yield env
    finally:
        views.stop()
        log_server.stop()


async def carried_pages(base: str, auth: dict[str, str]) -> float:
    async with httpx.AsyncClient(base_url=base, headers=auth) as http:
        text = (await http.get("/metrics")).text
    return sum(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith('dateline_live_index_pages_total{how="carried"}')
    )


def told(got: list[Event]) -> list[tuple[str, int, str, str]]:
    """What an update event says of its update (its story's index entry is as of when
    it is read: a stream read back gets each story's entry as it is now)."""
    return [
        (e.json()["story"], e.json()["version"], e.json()["position"], e.json()["summary"])
        for e in got
        if e.event == "update"
    ]


async def test_a_live_client_gets_with_carried_pages_what_a_reading_client_gets(
    system: dict[str, str], tmp_path: Path
) -> None:
    env = system
    lines = [msgspec.json.encode(update(subject=s)) for s in STORIES]
    lines += [statement(STORIES[n % len(STORIES)], n) for n in range(UPDATES - len(STORIES))]
    client = aioredis.Redis.from_url(env["REDIS_URL"])
    log = Log(client, Keys("paged", 8))
    with (
        background(["projector"], env, tmp_path / "projector.log"),
        http_service("query", env, tmp_path / "query.log") as base,
    ):
        live: list[Event] = []
        first = asyncio.Event()
        following = asyncio.create_task(_follow(base, live, first, reading(env)))
        try:
            await asyncio.wait_for(first.wait(), 30)
            index = live[0]
            assert index.event == "index"
            for start in range(0, len(lines), 3):  # small commits, a few a partition
                results = await log.append(lines[start : start + 3])
                assert {r.status for r in results} == {"appended"}
                await asyncio.sleep(0.01)
            for _ in range(600):
                if len(told(live)) >= UPDATES:
                    break
                await asyncio.sleep(0.05)
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
            await client.aclose()
        assert await carried_pages(base, reading(env)) > 0
        back = await read_until(
            base, "/v1/live", index.id, lambda got: len(got) >= UPDATES, reading(env)
        )
    followed = told(live)
    assert len(followed) == UPDATES
    assert followed == told(back)
    assert len({(story, version) for story, version, _, _ in followed}) == UPDATES


async def _follow(base: str, got: list[Event], first: asyncio.Event, auth: dict[str, str]) -> None:
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=40)) as http,
        http.stream("GET", "/v1/live", headers=auth) as response,
    ):
        assert response.status_code == 200
        async for event in events(response):
            got.append(event)
            first.set()
