"""Load and starvation (issue 18, item 3), each a finding of the security probe: a pool
that waits, bad tokens that cost good ones nothing, a cap on live streams, a full
server that refuses with a 503 and writes nothing, inboxes trimmed, `rejected` capped,
huge entries refused by the server, and live clients that stop reading dropped (those
that read slowly kept)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis
import redis.asyncio as aioredis
import structlog
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from dateline.ingest.app import create_app as ingest_app
from dateline.ingest.credentials import Credentials
from dateline.ingest.validator import create_validator
from dateline.projector.app import create_app as projector_app
from dateline.query import live
from dateline.query.app import create_app as query_app
from dateline.store.config import Settings
from dateline.store.connection import connect
from dateline.store.embedded import EmbeddedRedis
from dateline.store.layout import Keys, inbox_key, rejected_key
from dateline.store.log import Log
from dateline.store.refused import KEEP_BYTES
from tests.integration.serving import serve
from tests.integration.test_kit import statement
from tests.integration.test_validator import settle
from tests.raw import entries_of
from tests.readers import bearer

SOURCE = "urn:feed:test"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    redis_ = EmbeddedRedis(tmp_path / "redis", fsync="everysec")
    redis_.start()
    try:
        yield redis_
    finally:
        redis_.stop()


PARTITIONS = 4


def settings_for(server: EmbeddedRedis, **kw: int) -> Settings:
    return Settings(server.url, Path("."), "load", PARTITIONS, **kw)  # type: ignore[arg-type]


async def test_300_concurrent_reads_wait_for_a_connection_and_none_fails(
    server: EmbeddedRedis,
) -> None:
    cfg = settings_for(server)
    log = Log(connect(server.url), Keys(cfg.prefix, PARTITIONS))
    await log.check_partitions()
    await log.append([statement(f"story-{n}", "s1") for n in range(20)])
    app = await projector_app(cfg, server.url, consumer="p")
    while await app.runner.step():
        pass
    auth = await bearer(server.url, cfg.prefix)
    async with AsyncTestClient(app=query_app(cfg, server.url, pool_size=10)) as http:
        http.headers.update(auth)
        answers = await asyncio.gather(
            *(http.get(f"/v1/stories/story-{n % 20}") for n in range(300))
        )
    assert {r.status_code for r in answers} == {200}
    await app.client.aclose()
    await log.close()


async def test_reads_past_the_limit_wait_their_turn_and_none_fails(server: EmbeddedRedis) -> None:
    """Two at a time (DATELINE_MAX_REQUESTS): 200 reads still all answer 200, in turn."""
    cfg = settings_for(server, max_requests=2)
    log = Log(connect(server.url), Keys(cfg.prefix, PARTITIONS))
    await log.check_partitions()
    await log.append([statement("story-0", f"s{n}") for n in range(50)])
    app = await projector_app(cfg, server.url, consumer="p")
    while await app.runner.step():
        pass
    auth = await bearer(server.url, cfg.prefix)
    async with AsyncTestClient(app=query_app(cfg, server.url)) as http:
        http.headers.update(auth)
        answers = await asyncio.gather(*(http.get("/v1/stories/story-0") for _ in range(200)))
        waiting = (await http.get("/metrics")).text
    assert {r.status_code for r in answers} == {200}
    assert 'dateline_http_requests_waiting{service="query"} 0.0' in waiting
    await app.client.aclose()
    await log.close()


async def test_a_flood_of_bad_tokens_costs_the_good_ones_nothing(server: EmbeddedRedis) -> None:
    cfg = settings_for(server)
    client = connect(server.url)
    token = await Credentials(client, cfg.prefix).add("wire-a", SOURCE)
    await client.aclose()
    kind = {"content-type": "application/cloudevents+json"}
    async with AsyncTestClient(app=ingest_app(cfg, server.url, pool_size=10)) as http:
        bad = [
            http.post(
                "/v1/updates",
                content=statement("a-story", f"bad{n}"),
                headers={**kind, "authorization": f"Bearer dl_wrong{n}"},
            )
            for n in range(300)
        ]
        good = [
            http.post(
                "/v1/updates",
                content=statement(f"story-{n}", "s1"),
                headers={**kind, "authorization": f"Bearer {token}"},
            )
            for n in range(30)
        ]
        answers = await asyncio.gather(*bad, *good)
    assert {r.status_code for r in answers[:300]} == {401}
    assert {r.status_code for r in answers[300:]} == {202}


async def test_live_streams_past_the_cap_are_refused_with_a_503(server: EmbeddedRedis) -> None:
    cfg = settings_for(server, max_live_streams=2)
    auth = await bearer(server.url, cfg.prefix)
    async with (
        serve(query_app(cfg, server.url)) as base,
        httpx.AsyncClient(timeout=10, headers=auth) as http,
        http.stream("GET", f"{base}/v1/live") as first,
        http.stream("GET", f"{base}/v1/live") as second,
    ):
        assert (first.status_code, second.status_code) == (200, 200)
        # Held: an abandoned line iterator closes its response when it is collected.
        held = [first.aiter_lines(), second.aiter_lines()]
        for lines in held:
            await anext(lines)
        third = await http.get(f"{base}/v1/live")
        assert third.status_code == 503
        assert third.headers["retry-after"] == "5"
        assert "DATELINE_MAX_LIVE_STREAMS" in third.json()["detail"]
    # Closed streams give their places back.
    async with (
        serve(query_app(cfg, server.url)) as base,
        httpx.AsyncClient(timeout=10, headers=auth) as http,
    ):
        for _ in range(3):
            async with http.stream("GET", f"{base}/v1/live") as again:
                assert again.status_code == 200
                await anext(again.aiter_lines())


async def test_streams_whose_clients_left_at_once_are_reclaimed_once(
    server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled by litestar when their clients leave, the streams end (their places
    given back), and after the burst one reclaim gives back what their cycles held."""
    monkeypatch.setattr(live, "RECLAIM_AFTER", 6)
    monkeypatch.setattr(live, "RECLAIM_DELAY_S", 0.2)
    monkeypatch.setattr(live, "log", structlog.get_logger("dateline.query"))
    cfg = settings_for(server)
    auth = await bearer(server.url, cfg.prefix)
    app = query_app(cfg, server.url)
    with capture_logs() as logs:
        async with serve(app) as base, httpx.AsyncClient(timeout=10, headers=auth) as http:
            async with contextlib.AsyncExitStack() as held:
                lines = []  # held: an abandoned line iterator closes its response
                for _ in range(8):
                    stream = await held.enter_async_context(http.stream("GET", f"{base}/v1/live"))
                    lines.append(stream.aiter_lines())
                    await anext(lines[-1])
                assert app.state.live_streams.open == 8
            for _ in range(200):  # the reclaim's own line: a long collection logs too
                if app.state.live_streams.open == 0 and reclaimed(logs):
                    break
                await asyncio.sleep(0.05)
            assert app.state.live_streams.open == 0
            await asyncio.sleep(0.5)  # no second reclaim for the same burst
    reclaims = reclaimed(logs)
    assert len(reclaims) == 1, logs
    assert reclaims[0]["streams"] >= 6 and reclaims[0]["collected"] > 0


def reclaimed(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "memory of ended live streams reclaimed"]


@pytest.mark.parametrize(
    ("setting", "kind", "retry_after"),
    [("maxmemory", "server-full", "30"), ("min-replicas-to-write", "refusing-writes", "1")],
    ids=["full", "too-few-replicas"],
)
async def test_a_server_refusing_writes_answers_a_503_and_writes_nothing(
    server: EmbeddedRedis, setting: str, kind: str, retry_after: str
) -> None:
    """Over its maxmemory (noeviction), or short of the replicas its
    `min-replicas-to-write` asks for: the feed is told to send again, not that we broke."""
    cfg = settings_for(server)
    admin = aioredis.Redis.from_url(server.url)
    token = await Credentials(admin, cfg.prefix).add("wire-a", SOURCE)
    assert (await admin.config_get("maxmemory-policy"))["maxmemory-policy"] == "noeviction"
    headers = {"content-type": "application/cloudevents+json", "authorization": f"Bearer {token}"}
    body = statement("a-story", "s1")
    async with AsyncTestClient(app=ingest_app(cfg, server.url)) as http:
        was = cast(str, (await admin.config_get(setting))[setting])  # values come as text
        used = int((await admin.info("memory"))["used_memory"])
        # Full, as a server at its limit is; or wanting a replica it does not have.
        await admin.config_set(setting, used // 2 if setting == "maxmemory" else 1)
        try:
            full = await http.post("/v1/updates", content=body, headers=headers)
        finally:
            await admin.config_set(setting, was)
        assert full.status_code == 503, full.text
        assert full.json()["type"] == f"urn:dateline:problem:{kind}"
        assert full.headers["retry-after"] == retry_after
        assert "was not written" in full.json()["detail"]
        assert "same id" in full.json()["detail"]
        log = Log(admin, Keys(cfg.prefix, PARTITIONS))
        assert await log.version("a-story") == 0
        again = await http.post("/v1/updates", content=body, headers=headers)
        assert again.status_code == 202
        assert [u.id for u in await log.read_story("a-story")] == ["a-story-s1"]
    await admin.aclose()


async def test_inboxes_are_trimmed_and_rejected_keeps_a_truncated_copy(
    server: EmbeddedRedis,
) -> None:
    cfg = settings_for(server)
    client = connect(server.url)
    keys = Keys(cfg.prefix, PARTITIONS)
    await Credentials(client, cfg.prefix).add("wire-a", SOURCE)
    inbox = inbox_key(cfg.prefix, "wire-a")
    await client.xadd(inbox, {"__data__": statement("a-story", "s1")})
    await client.xadd(inbox, {"__data__": b"x" * 200_000})  # not JSON, and huge
    runner = await create_validator(client, keys, "v1")
    await settle(runner)
    assert await client.xlen(inbox) == 0  # in the log, or in `rejected`
    [(_, fields)] = entries_of(await client.xrange(rejected_key(cfg.prefix)))
    assert len(fields[b"record"]) == KEEP_BYTES
    assert (fields[b"size"], fields[b"truncated"]) == (b"200000", b"1")
    assert await Log(client, keys).version("a-story") == 1
    await client.aclose()


def test_a_huge_entry_is_refused_by_the_server_itself(server: EmbeddedRedis) -> None:
    feed = redis.Redis.from_url(server.url)
    with pytest.raises(redis.RedisError):
        feed.xadd("load:inbox:wire-a", {"__data__": b"x" * (9 * 1024 * 1024)})
    feed = redis.Redis.from_url(server.url)
    assert feed.xlen("load:inbox:wire-a") == 0
    feed.close()


async def test_a_live_client_that_stops_reading_is_dropped(server: EmbeddedRedis) -> None:
    cfg = settings_for(server)
    log = Log(connect(server.url), Keys(cfg.prefix, PARTITIONS))
    await log.check_partitions()
    async with serve(query_app(cfg, server.url, poll_s=0.05), slow_client_s=1.0) as base:
        port = int(base.rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        await log.append([statement("big-story", "s0")])
        app = await projector_app(cfg, server.url, consumer="p")
        while await app.runner.step():
            pass
        auth = (await bearer(server.url, cfg.prefix))["authorization"].encode()
        sock.sendall(
            b"GET /v1/stories/big-story/live HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + auth
            + b"\r\n\r\n"
        )
        # Updates pile up for a client that reads nothing: each event carries its record.
        text = "x" * 4000
        for n in range(60):
            await log.append(
                [
                    statement("big-story", f"s{n}-{i}").replace(
                        f"said s{n}-{i}".encode(), text.encode()
                    )
                    for i in range(50)
                ]
            )
        started = time.monotonic()
        while await app.runner.step():
            pass
        await app.client.aclose()
        # Still not reading, past the window: a client that reads at all is kept.
        await asyncio.sleep(3.0)
        # The server closed the stream: reading drains what was sent, then the end.
        sock.setblocking(False)
        closed = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not closed:
            await asyncio.sleep(0.2)
            try:
                while chunk := sock.recv(65536):
                    del chunk
                closed = True
            except ConnectionResetError:  # aborted: the unread rest dropped with it
                closed = True
            except BlockingIOError:
                continue
        sock.close()
    assert closed, "the stream of a client that stopped reading stayed open"
    assert time.monotonic() - started < 30
    await log.close()


async def test_a_client_that_reads_slowly_but_reads_is_kept() -> None:
    """The rule is progress in each window, not the whole buffer drained in one: a
    client on a slow link reading a large answer is served to the end, across windows
    in which its socket stayed full."""
    chunk, chunks = b"x" * 2**20, 8
    waited: list[float] = []

    async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        head = [(b"content-length", str(len(chunk) * chunks).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        for n in range(chunks):
            began = time.monotonic()
            await send({"type": "http.response.body", "body": chunk, "more_body": n < chunks - 1})
            waited.append(time.monotonic() - began)
            await asyncio.sleep(0)  # a turn, as an app between its writes: they go out

    window, least = 0.3, 64 * 1024
    async with serve(answer, slow_client_s=window, slow_client_bytes=least) as base:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**16)
        writer.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 65536
        )
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        got = 0
        # About four times the least a window, in small reads: slow, never still.
        per_tick = 4 * least * 0.05 / window
        while got < len(chunk) * chunks:
            mark = got
            while got - mark < per_tick and got < len(chunk) * chunks:
                data = await reader.read(8192)
                assert data, f"the server closed the connection after {got} bytes"
                got += len(data)
            await asyncio.sleep(0.05)
        writer.close()
    assert got == len(chunk) * chunks
    # The rule was in play: some send waited on the client for several windows.
    assert max(waited) > 3 * window, waited
