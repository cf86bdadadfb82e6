"""Appends confirmed by replicas (`WAIT`): a server with a replica, the replica stopped.

A replica stopped with SIGSTOP neither answers nor drops its link: the primary's
`WAIT` runs out its timeout, as it does for a replica that lags or is cut off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from dateline.ingest.app import create_app
from dateline.ingest.credentials import Credentials
from dateline.ingest.validator import create_validator
from dateline.ingest.wire import CE_BATCH
from dateline.store import log as log_module
from dateline.store.config import Settings
from dateline.store.embedded import EmbeddedRedis
from dateline.store.layout import Keys, inbox_key
from dateline.store.log import MIN_REPLICAS_AUTO, Log, NotReplicated
from tests.factories import encode, update
from tests.raw import script_calls

TIMEOUT_MS = 200
QUICK = ("repl-diskless-sync-delay 0", "shutdown-timeout 0")
"""A primary's: no wait before a replica's first sync (5 s by default), none at shutdown
for a replica that lags (10 s): replicas here are frozen on purpose."""


class Pair:
    def __init__(self, primary: EmbeddedRedis, replica: EmbeddedRedis) -> None:
        self.primary, self.replica = primary, replica

    @contextmanager
    def replica_stopped(self) -> Iterator[None]:
        assert self.replica.process is not None
        os.kill(self.replica.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.replica.process.pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("replicas")
    with EmbeddedRedis(root / "primary", fsync="everysec", extra=QUICK) as primary:
        replica = EmbeddedRedis(
            root / "replica", fsync="everysec", extra=(f"replicaof 127.0.0.1 {primary.port}",)
        )
        with replica:
            client = redis.Redis.from_url(replica.url)
            deadline = time.monotonic() + 20
            while client.info("replication").get("master_link_status") != "up":
                assert time.monotonic() < deadline, "the replica never linked"
                time.sleep(0.05)
            client.close()
            # The replica's link is up before the primary counts it: after a diskless
            # sync the primary takes a replica online at its first acknowledgement, up to
            # a second later, and until then `WAIT` counts none (seen once on Redis 6.2).
            client = redis.Redis.from_url(primary.url)
            while client.info("replication").get("slave0", {}).get("state") != "online":
                assert time.monotonic() < deadline, "the primary never took the replica online"
                time.sleep(0.05)
            client.close()
            yield Pair(primary, replica)


@pytest.fixture
async def log(pair: Pair) -> AsyncIterator[Log]:
    client = aioredis.Redis.from_url(pair.primary.url)
    log = Log(
        client,
        Keys(f"r{uuid.uuid4().hex[:10]}", 4),
        min_replicas=MIN_REPLICAS_AUTO,
        replica_timeout_ms=TIMEOUT_MS,
    )
    await log.check_partitions()
    yield log
    await client.aclose()


async def test_auto_waits_for_one_replica_where_there_is_one(log: Log, redis_url: str) -> None:
    assert await log.resolve_replicas() == 1
    alone = Log(aioredis.Redis.from_url(redis_url), Keys("alone", 4), min_replicas=-1)
    assert await alone.resolve_replicas() == 0  # a server without replicas: none to wait for
    await alone.close()
    fixed = Log(log.redis, log.keys, min_replicas=3)
    assert await fixed.resolve_replicas() == 3  # a number set is kept as it is


async def test_auto_finds_a_replica_started_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compose starts the services beside the replica: `auto` looks again, at an append,
    while it has found none; once it has, it keeps waiting for one."""
    monkeypatch.setattr(log_module, "AUTO_RECHECK_S", 0.0)
    with EmbeddedRedis(tmp_path / "p", fsync="everysec", extra=QUICK) as primary:
        log = Log(aioredis.Redis.from_url(primary.url), Keys("late", 4), min_replicas=-1)
        assert await log.resolve_replicas() == 0
        await log.append([encode(update(id="alone"))])  # no replica: nothing to wait for
        late = EmbeddedRedis(
            tmp_path / "r", fsync="everysec", extra=(f"replicaof 127.0.0.1 {primary.port}",)
        )
        with late:
            while await log.resolve_replicas() == 0:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.05)
            await log.append([encode(update(id="seen"))])
            assert log.min_replicas == 1
            monkeypatch.setattr(log_module, "AUTO_RECHECK_S", 3600.0)
        # The replica is gone: appends are refused, not acknowledged by the primary alone.
        with pytest.raises(NotReplicated):
            await log.append([encode(update(id="after"))])
        await log.close()


async def test_an_append_the_replica_did_not_confirm_is_refused_and_safe_to_send_again(
    pair: Pair, log: Log
) -> None:
    await log.resolve_replicas()
    # Confirmed: no error. Given time: on a loaded machine (the suite's workers, 2
    # cores) a running replica once took longer than 200 ms to confirm.
    log.replica_timeout_ms = 10_000
    [first] = await log.append([encode(update(id="u1"))])
    assert first.status == "appended"
    log.replica_timeout_ms = TIMEOUT_MS
    with pair.replica_stopped():
        start = time.monotonic()
        with pytest.raises(NotReplicated, match="0 of the 1 replicas") as raised:
            await log.append([encode(update(id="u2"))])
        assert time.monotonic() - start >= TIMEOUT_MS / 1000
        # The primary took it: it may or may not survive a failover, so it is not
        # acknowledged, but the results say what happened.
        assert [r.status for r in raised.value.results] == ["appended"]
        assert await log.version("hanoi-summit-2019") == 2
    [again] = await log.append([encode(update(id="u2"))])  # the feed's retry
    assert (again.status, again.version) == ("duplicate", 2)
    assert await log.version("hanoi-summit-2019") == 2  # once


async def test_a_waited_append_is_sent_by_its_text_when_the_server_lost_the_script(
    log: Log,
) -> None:
    await log.resolve_replicas()
    await log.redis.script_flush()
    before = await script_calls(log.redis)
    [result] = await log.append([encode(update(id="after-flush"))])
    assert (result.status, result.version) == ("appended", 1)
    after = await script_calls(log.redis)  # by its text, which loads it as it runs
    assert after["eval"] - before["eval"] == 1
    assert after["script"] == before["script"]


async def test_a_bulk_append_stops_at_the_batch_the_replica_did_not_confirm(
    pair: Pair, log: Log
) -> None:
    await log.resolve_replicas()
    got: list[Any] = []

    async def bulk() -> None:
        async for results in log.append_stream([[encode(update(id=f"b{i}"))] for i in range(3)]):
            got.append(results)

    with pair.replica_stopped(), pytest.raises(NotReplicated):
        await bulk()
    assert got == []  # nothing was reported as in the log for good


async def test_ingest_answers_503_with_retry_after_and_a_retry_is_a_duplicate(
    pair: Pair, log: Log
) -> None:
    """The updates may or may not be in the log for good; sent again, each is a duplicate.
    An id used again for other content in the batch is logged and counted with the 503,
    not only once a retry is confirmed (replicas may lag for minutes)."""
    settings = dataclasses.replace(
        Settings(pair.primary.url, Path("."), log.keys.prefix, log.keys.partitions),
        replica_timeout_ms=TIMEOUT_MS,
    )
    token = await Credentials(log.redis, log.keys.prefix).add("wire", "urn:feed:test")
    headers = {"authorization": f"Bearer {token}", "content-type": CE_BATCH}
    await log.append([encode(update(id="h0"))])
    other = update(id="h0", time="2019-02-28T16:00:00+07:00")
    body = msgspec.json.encode([msgspec.json.decode(encode(x)) for x in (other, update(id="h1"))])
    counted = REGISTRY.get_sample_value("dateline_reused_ids_total", {"service": "ingest"}) or 0
    async with AsyncTestClient(app=create_app(settings, pair.primary.url)) as http:
        with pair.replica_stopped(), capture_logs() as logs:
            r = await http.post("/v1/updates", content=body, headers=headers)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "2"
        problem = r.json()
        assert problem["type"] == "urn:dateline:problem:not-replicated"
        assert "may or may not be in the log" in problem["detail"]
        assert "same ids is safe" in problem["detail"]
        assert [x["status"] for x in problem["results"]] == ["duplicate", "appended"]
        assert problem["results"][0]["differs"] == ["time"]
        [warned] = [e for e in logs if e["event"].startswith("id used again")]
        assert (warned["update"], warned["differs"], warned["feed"]) == ("h0", "time", "wire")
        reused = REGISTRY.get_sample_value("dateline_reused_ids_total", {"service": "ingest"})
        assert reused == counted + 1
        again = await http.post("/v1/updates", content=body, headers=headers)
        assert again.status_code == 200
        assert [x["status"] for x in again.json()["results"]] == ["duplicate", "duplicate"]


async def test_the_validator_keeps_an_inbox_entry_until_its_append_is_confirmed(
    pair: Pair, log: Log
) -> None:
    await Credentials(log.redis, log.keys.prefix).add("wire", "urn:feed:test")
    inbox = inbox_key(log.keys.prefix, "wire")
    await log.redis.xadd(inbox, {"__data__": encode(update(id="v1"))})
    runner = await create_validator(
        log.redis, log.keys, "v", min_replicas=1, replica_timeout_ms=TIMEOUT_MS
    )
    runner.config = dataclasses.replace(runner.config, block_ms=20, retry_delay_s=0.05)
    with pair.replica_stopped():
        await runner.step()
        assert (await log.redis.xpending(inbox, "validator"))["pending"] == 1
    deadline = time.monotonic() + 10
    while (await log.redis.xpending(inbox, "validator"))["pending"]:
        assert time.monotonic() < deadline
        await runner.step()
    assert [u.id for u in await log.read_story("hanoi-summit-2019")] == ["v1"]


async def test_a_wait_ended_by_the_primary_stepping_down_is_not_a_confirmation(
    tmp_path: Path,
) -> None:
    """A failover demotes the primary while an append waits for its replica: the server
    ends the `WAIT` with "UNBLOCKED ... (master -> replica?)". What the old primary took
    may be dropped with its role, so the append is not acknowledged (a 503 to a feed,
    which retries), where it was a 500 before."""
    with EmbeddedRedis(tmp_path / "p", fsync="everysec", extra=QUICK) as primary:
        replica = EmbeddedRedis(
            tmp_path / "r", fsync="everysec", extra=(f"replicaof 127.0.0.1 {primary.port}",)
        )
        with replica:
            admin = aioredis.Redis.from_url(primary.url)
            while (await admin.info("replication"))["connected_slaves"] < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            log = Log(aioredis.Redis.from_url(primary.url), Keys("demoted", 4), min_replicas=1)
            log.replica_timeout_ms = 10_000
            pair = Pair(primary, replica)
            with pair.replica_stopped():
                waiting = asyncio.create_task(log.append([encode(update(id="d1"))]))
                await asyncio.sleep(0.3)  # appended, and waiting for the frozen replica
                assert not waiting.done()
                await admin.execute_command("REPLICAOF", "127.0.0.1", str(replica.port))  # type: ignore[no-untyped-call]
                with pytest.raises(NotReplicated, match="0 of the 1 replicas") as raised:
                    await asyncio.wait_for(waiting, 5)
                assert [r.status for r in raised.value.results] == ["appended"]
                await admin.execute_command("REPLICAOF", "NO", "ONE")  # type: ignore[no-untyped-call]
            await log.close()
            await admin.aclose()
