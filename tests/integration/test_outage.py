"""The server goes away and comes back on its port: ingest answers a retryable 503, the
query API a clear one, readiness goes red and green, the projector waits and catches
up, and a live stream stays open and resumes where it was. Nothing restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from dateline.cli.common import redis_ready
from dateline.ingest.app import create_app as ingest_app
from dateline.ingest.credentials import Credentials
from dateline.kit import DatelineLog
from dateline.projector.app import create_app as projector_app
from dateline.query.app import create_app as query_app
from dateline.store.config import Settings
from dateline.store.connection import connect
from dateline.store.embedded import EmbeddedRedis
from dateline.store.layout import Keys
from dateline.store.log import Log
from dateline.store.readers import Readers
from dateline.store.readmodels import ReadModels
from tests.integration.serving import serve
from tests.integration.test_kit import recorded, statement, until
from tests.readers import bearer

SOURCE = "urn:feed:test"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    redis = EmbeddedRedis(tmp_path / "redis", fsync="always")
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


PARTITIONS = 4


def settings_for(server: EmbeddedRedis) -> Settings:
    return Settings(server.url, Path("."), "out", PARTITIONS, lease_ttl_ms=1000)


@contextlib.asynccontextmanager
async def down(server: EmbeddedRedis) -> AsyncIterator[None]:
    """SIGKILL the server, as a crash would; start it again on its port, from its AOF."""
    server.kill()
    try:
        yield
    finally:
        await asyncio.to_thread(server.start)


async def test_ingest_answers_a_retryable_503_and_the_retry_lands_once(
    server: EmbeddedRedis,
) -> None:
    cfg = settings_for(server)
    client = connect(server.url)
    token = await Credentials(client, cfg.prefix).add("wire-a", SOURCE)
    await client.aclose()
    body = statement("a-story", "s1")
    headers = {"content-type": "application/cloudevents+json", "authorization": f"Bearer {token}"}
    async with AsyncTestClient(app=ingest_app(cfg, server.url)) as http:
        async with down(server):
            refused = await http.post("/v1/updates", content=body, headers=headers)
            ready = await http.get("/readyz")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"].startswith("application/problem+json")
        problem = refused.json()
        assert "same id is safe" in problem["detail"]
        assert "Traceback" not in refused.text
        assert ready.status_code == 503
        retried = await http.post("/v1/updates", content=body, headers=headers)
        assert retried.status_code in (200, 202), retried.text
        assert (await http.get("/readyz")).status_code == 200
    log = Log(connect(server.url, retry_lost=True), Keys(cfg.prefix, PARTITIONS))
    assert [u.id for u in await log.read_story("a-story")] == ["a-story-s1"]
    await log.close()


async def test_the_query_api_answers_503_while_the_server_is_away(server: EmbeddedRedis) -> None:
    cfg = settings_for(server)
    auth = await bearer(server.url, cfg.prefix)
    async with AsyncTestClient(app=query_app(cfg, server.url)) as http:
        http.headers.update(auth)
        assert (await http.get("/v1/stories")).status_code == 200
        async with down(server):
            # A list this process has not rendered yet (what it keeps it may answer until
            # the doorbell hears the outage): it must ask the server.
            away = await http.get("/v1/stories", params={"limit": 3})
            ready = await http.get("/readyz")
        assert away.status_code == 503
        assert away.headers["retry-after"] == "1"
        assert "ask again" in away.json()["detail"]
        assert ready.status_code == 503
        assert (await http.get("/v1/stories")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200


async def test_the_projector_waits_out_an_outage_and_catches_up(server: EmbeddedRedis) -> None:
    cfg = settings_for(server)
    log = Log(connect(server.url, retry_lost=True), Keys(cfg.prefix, PARTITIONS))
    await log.check_partitions()
    app = await projector_app(cfg, server.url, consumer="p1")
    stop = asyncio.Event()
    running = asyncio.create_task(app.run(stop))
    try:
        await log.append([statement("a-story", f"s{n}") for n in range(1, 4)])
        await until(lambda: _version(log, "a-story", 3))
        async with down(server):
            await asyncio.sleep(1.5)  # several of the runner's cycles fail meanwhile
            assert not running.done()  # it waits; it does not exit
        await log.append([statement("a-story", f"s{n}") for n in range(4, 7)])
        await until(lambda: _version(log, "a-story", 6))
    finally:
        stop.set()
        await asyncio.wait_for(running, 15)
        await log.close()


async def _version(log: Log, story: str, version: int) -> bool:
    raw = await log.redis.get(ReadModels(log.keys, "v1").story(story))
    return raw is not None and json.loads(raw)["version"] == version


async def test_a_live_stream_stays_open_through_an_outage_and_resumes(
    server: EmbeddedRedis,
) -> None:
    cfg = settings_for(server)
    log = Log(connect(server.url, retry_lost=True), Keys(cfg.prefix, PARTITIONS))
    await log.check_partitions()
    app = await projector_app(cfg, server.url, consumer="p1")
    stop = asyncio.Event()
    running = asyncio.create_task(app.run(stop))
    seen: list[str] = []
    try:
        await log.append([statement("a-story", "s1")])
        await until(lambda: _version(log, "a-story", 1))
        auth = await bearer(server.url, cfg.prefix)
        async with (
            serve(query_app(cfg, server.url, poll_s=0.2)) as base,
            httpx.AsyncClient(timeout=30, headers=auth) as http,
            http.stream("GET", f"{base}/v1/stories/a-story/live") as stream,
        ):
            lines = stream.aiter_lines()

            async def next_event() -> str:
                async for line in lines:
                    if line.startswith("id:"):
                        seen.append(line[3:].strip())
                    if line.startswith("event:"):
                        return line[6:].strip()
                raise AssertionError("the stream ended")

            assert await next_event() == "state"
            async with down(server):
                await asyncio.sleep(1.5)
            await log.append([statement("a-story", "s2")])
            # The resumed stream may say the state it resumed from again (same id, as
            # after a client's own reconnection), then s2's update and the new state.
            events = [await asyncio.wait_for(next_event(), 20)]
            while events[-1] != "update":
                events.append(await asyncio.wait_for(next_event(), 20))
            assert set(events[:-1]) <= {"state"}
            assert await asyncio.wait_for(next_event(), 20) == "state"
    finally:
        stop.set()
        await asyncio.wait_for(running, 15)
        await log.close()
    # Positions never go back, and s2's comes once, after s1's.
    assert seen == sorted(seen)
    assert len(set(seen)) == 2


async def test_a_kit_app_keeps_its_group_through_an_outage_longer_than_its_lease(
    server: EmbeddedRedis,
) -> None:
    """The lease ran out while the server was away: nobody else took it, so the app takes
    it again and goes on (it used to stop, as if another process had taken over)."""
    cfg = settings_for(server)
    log = Log(connect(server.url, retry_lost=True), Keys(cfg.prefix, PARTITIONS))
    await log.check_partitions()
    kit = DatelineLog(server.url, group="cms", prefix=cfg.prefix, lease_ttl_ms=300, retry_s=0.05)
    seen = recorded(kit)

    app = kit.app()
    await app.start()
    try:
        await log.append([statement("a-story", "s1")])
        await until(lambda: len(seen) == 1)
        async with down(server):
            await asyncio.sleep(1.0)  # three times the lease's time to live
        await log.append([statement("a-story", "s2")])
        await until(lambda: len(seen) == 2)
        assert not kit.lost.is_set()
    finally:
        await app.stop()
        await log.close()


@pytest.mark.parametrize("cluster", [None, False], ids=["asks-the-server", "told"])
async def test_a_kit_started_while_the_server_is_down_starts_once_it_is_back(
    server: EmbeddedRedis, cluster: bool | None
) -> None:
    """Started during an outage (or a cluster's failover), `dateline deliver` exited on
    its first refused connection, and delivered nothing until someone started it again."""
    cfg = settings_for(server)
    log = Log(connect(server.url, retry_lost=True), Keys(cfg.prefix, PARTITIONS))
    await log.check_partitions()
    await log.append([statement("a-story", "s1")])
    kit = DatelineLog(
        server.url,
        group="cms",
        prefix=cfg.prefix,
        lease_ttl_ms=300,
        retry_s=0.05,
        cluster=cluster,  # told: no question to the server before the kit's start
    )
    seen = recorded(kit)

    app = kit.app()
    try:
        async with down(server):
            starting = asyncio.create_task(app.start())
            await asyncio.sleep(1.0)
            assert not starting.done()  # waiting for the server, not dead
        await asyncio.wait_for(starting, 30)
        await log.append([statement("a-story", "s2")])
        await until(lambda: seen == ["a-story-s1", "a-story-s2"])
    finally:
        await app.stop()
        await log.close()


async def test_metrics_are_scraped_through_an_outage_with_a_token_checked_before(
    server: EmbeddedRedis,
) -> None:
    """The query service's and ingest's `/metrics` want an `ops` token, which they check
    in Redis: through an outage they answer a token Redis said was an `ops` reader's
    (within the hour), and say the server is unreachable, its gauges gone rather than
    what they last read; a token not checked before gets the 503 it got."""
    cfg = settings_for(server)
    auth = await bearer(server.url, cfg.prefix)
    stranger = await bearer(server.url, cfg.prefix)
    # The registry is the process's: other tests' servers have series of their own.
    reachable = f'dateline_server_reachable{{server="127.0.0.1:{server.port}"}}'
    async with (
        AsyncTestClient(app=query_app(cfg, server.url)) as query,
        AsyncTestClient(app=ingest_app(cfg, server.url)) as ingest,
    ):
        before = await query.get("/metrics", headers=auth)
        assert before.status_code == 200
        assert 'dateline_projection_lag_seconds{partition="0"}' in before.text
        assert _sample(before.text, reachable) == 1.0
        assert (await ingest.get("/metrics", headers=auth)).status_code == 200
        async with down(server):
            away = await query.get("/metrics", headers=auth)
            away_ingest = await ingest.get("/metrics", headers=auth)
            refused = await query.get("/metrics", headers=stranger)
            refused_ingest = await ingest.get("/metrics", headers=stranger)
        assert away.status_code == 200, away.text
        assert _sample(away.text, reachable) == 0.0
        assert "dateline_projection_lag_seconds{" not in away.text
        assert math.isnan(_sample(away.text, "dateline_parked_now"))  # unknown, not 0
        assert away_ingest.status_code == 200, away_ingest.text
        assert "dateline_http_request_seconds" in away_ingest.text
        assert (refused.status_code, refused_ingest.status_code) == (503, 503)
        after = await query.get("/metrics", headers=auth)
        assert _sample(after.text, reachable) == 1.0
        assert 'dateline_projection_lag_seconds{partition="0"}' in after.text


@contextlib.contextmanager
def hung(server: EmbeddedRedis) -> Iterator[None]:
    """SIGSTOP the server: its connections stay open and nothing answers, as with a disk
    hung under `appendfsync always` or packets dropped on the way."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


async def test_probes_and_scrapes_answer_in_time_while_the_server_does_not(
    server: EmbeddedRedis,
) -> None:
    """A server that holds its connections open and answers nothing: `/readyz` says so
    with a 503 within the healthchecks' 2 s, both scrapes answer within Prometheus's
    scrape timeout (10 s), the server unreachable, and a request gets its 503 after one
    socket timeout. They took the client's socket timeout (5 s) on each try of each
    call: `/readyz` and a request 15 s, the query's scrape 30 to 45 s."""
    cfg = settings_for(server)
    auth = await bearer(server.url, cfg.prefix)
    reachable = f'dateline_server_reachable{{server="127.0.0.1:{server.port}"}}'
    client = connect(server.url)
    token = await Credentials(client, cfg.prefix).add("wire-a", SOURCE)
    posted: dict[str, Any] = {
        "content": statement("a-story", "s1"),
        "headers": {
            "content-type": "application/cloudevents+json",
            "authorization": f"Bearer {token}",
        },
    }
    async with (
        AsyncTestClient(app=query_app(cfg, server.url), timeout=60) as query,
        AsyncTestClient(app=ingest_app(cfg, server.url), timeout=60) as ingest,
    ):
        assert (await query.get("/metrics", headers=auth)).status_code == 200
        assert (await ingest.get("/metrics", headers=auth)).status_code == 200
        where = f"127.0.0.1:{server.port}"  # as an SRE reads it
        with hung(server):
            took: dict[str, float] = {}
            answers: dict[str, httpx.Response | str | None] = {}
            for name, call in (
                ("query /readyz", lambda: query.get("/readyz")),
                ("ingest /readyz", lambda: ingest.get("/readyz")),
                ("probe", redis_ready(client)),
                ("query /metrics", lambda: query.get("/metrics", headers=auth)),
                ("ingest /metrics", lambda: ingest.get("/metrics", headers=auth)),
                (
                    "query /v1/stories",
                    lambda: query.get("/v1/stories", params={"limit": 3}, headers=auth),
                ),
                ("ingest /v1/updates", lambda: ingest.post("/v1/updates", **posted)),
            ):
                start = time.monotonic()
                answers[name] = await call()
                took[name] = time.monotonic() - start
        assert max(t for n, t in took.items() if "readyz" in n or n == "probe") < 2.0, took
        assert max(t for n, t in took.items() if "metrics" in n) < 8.0, took
        # A request waits one socket timeout (5 s) for its 503, not one a try (15 s).
        assert max(took["query /v1/stories"], took["ingest /v1/updates"]) < 10.0, took
        for name in ("query /readyz", "ingest /readyz"):
            ready = answers[name]
            assert isinstance(ready, httpx.Response)
            assert ready.status_code == 503
            assert f"no answer within 1 s (server {where})" in ready.json()["detail"]
        assert answers["probe"] == f"Redis: no answer within 1 s (server {where})"
        for name in ("query /v1/stories", "ingest /v1/updates"):
            away = answers[name]
            assert isinstance(away, httpx.Response)
            assert (away.status_code, away.headers["retry-after"]) == (503, "1"), away.text
        scraped = answers["query /metrics"]
        assert isinstance(scraped, httpx.Response) and scraped.status_code == 200
        assert _sample(scraped.text, reachable) == 0.0
        assert "dateline_projection_lag_seconds{" not in scraped.text
        ingested = answers["ingest /metrics"]
        assert isinstance(ingested, httpx.Response) and ingested.status_code == 200
        # Answered again once the server is: its connections cut by the deadlines are new.
        assert (await query.get("/readyz")).status_code == 200
        after = await query.get("/metrics", headers=auth)
        assert _sample(after.text, reachable) == 1.0
        assert await redis_ready(client)() is None
    await client.aclose()


def _sample(exposition: str, series: str) -> float:
    """The value of `series` (its name and labels as exposed) in a Prometheus exposition."""
    found = [
        float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith(series + " ")
    ]
    assert len(found) == 1, (series, found)
    return found[0]


async def test_a_scraper_revoked_before_an_outage_does_not_scrape_through_it(
    server: EmbeddedRedis,
) -> None:
    """The query service hears a revocation on the doorbell and forgets its scrapers at
    once: the revoked token is refused through the outage that follows."""
    cfg = settings_for(server)
    client = connect(server.url)
    token = await Readers(client, cfg.prefix).add("prometheus", "ops")
    auth = {"authorization": f"Bearer {token}"}
    async with AsyncTestClient(app=query_app(cfg, server.url)) as query:
        assert (await query.get("/metrics", headers=auth)).status_code == 200
        scrapers = query.app.state.scrapers
        assert scrapers.through_outage(token) is not None
        assert await Readers(client, cfg.prefix).revoke("prometheus")
        await client.aclose()
        await until(lambda: scrapers.through_outage(token) is None)
        async with down(server):
            refused = await query.get("/metrics", headers=auth)
        assert refused.status_code == 503
