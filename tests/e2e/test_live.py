"""Live pushes across disconnects and a restart of the query service: nothing missed, nothing twice.

Real processes: a Valkey server, `dateline projector` and `dateline query`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from dateline.store.layout import Keys
from dateline.store.log import Log
from tests.conftest import VALKEY, start_server
from tests.e2e.processes import background, free_port, http_service
from tests.e2e.sse import Event, events
from tests.factories import update
from tests.readers import add_reader, reading

MISSED = 500


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    """A server and a projector; tests start (and restart) the query service themselves."""
    server = start_server(VALKEY, tmp_path_factory.mktemp("live-redis"))
    logs = tmp_path_factory.mktemp("live-logs")
    env = {**os.environ, "REDIS_URL": server.url, "DATELINE_PREFIX": "live"}
    probe = free_port()
    env["TEST_PROBE_URL"] = f"http://127.0.0.1:{probe}"
    add_reader(env, "live")
    try:
        with background(["projector", "--probe-port", str(probe)], env, logs / "projector.log"):
            yield env, logs
    finally:
        server.stop()


def statement(story: str, n: int) -> bytes:
    data = {"statement": f"s{n}", "speaker": f"Speaker {n % 7}", "text": f"Remark number {n}"}
    return msgspec.json.encode(update("dateline.statement.made", subject=story, data=data))


async def publish(env: dict[str, str], lines: list[bytes]) -> None:
    client = aioredis.Redis.from_url(env["REDIS_URL"])
    log = Log(client, Keys("live", 8))
    try:
        for start in range(0, len(lines), 100):
            results = await log.append(lines[start : start + 100])
            assert {r.status for r in results} == {"appended"}
    finally:
        await client.aclose()


async def wait_projected(base: str, story: str, version: int, auth: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base, headers=auth) as http:
        while time.monotonic() < deadline:
            r = await http.get(f"/v1/stories/{story}")
            if r.status_code == 200 and r.json()["version"] >= version:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{story} did not reach version {version}")


async def read_until(
    base: str,
    path: str,
    last_id: str | None,
    done: Callable[[list[Event]], bool],
    auth: dict[str, str],
    seconds: float = 60,
) -> list[Event]:
    """Events from `path` until `done(events)` says so; then a short wait for extras."""
    got: list[Event] = []
    enough = asyncio.Event()
    headers = ({"Last-Event-ID": last_id} if last_id else {}) | auth
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=40)) as http:

        async def collect() -> None:
            async with http.stream("GET", path, headers=headers) as response:
                assert response.status_code == 200
                async for event in events(response):
                    got.append(event)
                    if done(got):
                        enough.set()

        task = asyncio.create_task(collect())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), seconds)
        await asyncio.sleep(0.5)  # anything sent twice would arrive now
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return got


async def test_story_stream_resumes_after_500_missed_updates_and_a_restart(
    system: tuple[dict[str, str], Path],
) -> None:
    env, logs = system
    story = "live-story-one"
    port = free_port()
    await publish(env, [msgspec.json.encode(update(subject=story))])
    with http_service("query", env, logs / "query.log", port) as base:
        await wait_projected(base, story, 1, reading(env))
        first = await read_until(
            base,
            f"/v1/stories/{story}/live",
            None,
            lambda got: len(got) >= 1,
            reading(env),
            seconds=10,
        )
    [state] = first
    assert (state.event, state.json()["version"]) == ("state", 1)
    await publish(env, [statement(story, n) for n in range(MISSED)])  # while no query service runs
    with http_service("query", env, logs / "query.log", port) as base:
        await wait_projected(base, story, MISSED + 1, reading(env))
        got = await read_until(
            base,
            f"/v1/stories/{story}/live",
            state.id,
            lambda got: any(e.event == "state" for e in got),
            reading(env),
        )
    updates = [e for e in got if e.event == "update"]
    assert [u.json()["version"] for u in updates] == list(range(2, MISSED + 2))
    assert [u.id for u in updates] == [u.json()["position"] for u in updates]
    assert [u.json()["record"]["data"]["text"] for u in updates[:2]] == [
        "Remark number 0",
        "Remark number 1",
    ]
    assert got[-1].event == "state"
    assert got[-1].json()["version"] == MISSED + 1


async def test_index_stream_resumes_with_its_cursor_after_a_restart(
    system: tuple[dict[str, str], Path],
) -> None:
    env, logs = system
    port = free_port()
    with http_service("query", env, logs / "query.log", port) as base:
        first = await read_until(
            base, "/v1/live", None, lambda got: len(got) >= 1, reading(env), seconds=10
        )
    [index] = first
    assert index.event == "index"
    stories = [f"live-index-{n}" for n in range(5)]
    lines = [msgspec.json.encode(update(subject=s)) for s in stories]
    lines += [statement(stories[n % 5], n) for n in range(MISSED - 5)]
    await publish(env, lines)
    with http_service("query", env, logs / "query.log", port) as base:
        for s in stories:
            await wait_projected(base, s, MISSED // 5, reading(env))
        got = await read_until(
            base, "/v1/live", index.id, lambda got: len(got) >= MISSED, reading(env)
        )
    assert all(e.event == "update" for e in got)
    seen = [(e.json()["story"], e.json()["version"]) for e in got]
    assert len(seen) == MISSED
    assert sorted(seen) == sorted((s, v) for s in stories for v in range(1, MISSED // 5 + 1))
    for s in stories:  # each story's updates in its order
        versions = [v for story, v in seen if story == s]
        assert versions == sorted(versions)
    # Resuming from the middle gets exactly the rest.
    middle = got[MISSED // 2 - 1]
    with http_service("query", env, logs / "query.log", port) as base:
        rest = await read_until(
            base, "/v1/live", middle.id, lambda got: len(got) >= MISSED - MISSED // 2, reading(env)
        )
    assert [(e.json()["story"], e.json()["version"]) for e in rest] == seen[MISSED // 2 :]


async def test_the_projector_reports_health_and_what_it_projected(
    system: tuple[dict[str, str], Path],
) -> None:
    env, _ = system
    base = env["TEST_PROBE_URL"]
    await publish(env, [msgspec.json.encode(update(subject="live-probed"))])
    async with httpx.AsyncClient(base_url=base) as http:
        deadline = time.monotonic() + 30
        projected = 0.0
        while time.monotonic() < deadline and projected < 1:
            with contextlib.suppress(httpx.HTTPError):
                text = (await http.get("/metrics")).text
                lines = [
                    x for x in text.splitlines() if x.startswith("dateline_projected_updates_total")
                ]
                projected = float(lines[0].split()[1]) if lines else 0.0
            await asyncio.sleep(0.1)
        assert projected >= 1
        assert (await http.get("/readyz")).json() == {"status": "ready"}
        assert (await http.get("/healthz")).status_code == 200
