"""The log on a real cluster (3 masters, a replica each, `dateline redis --cluster`'s
nodes): found by itself from any node's URL, a batch split by partition and sent side by
side with its results in input order, appends confirmed by the slot owner's replica,
atomic batches kept to one partition, a sealed log appended by its function."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import uuid

import pytest
from litestar.testing import AsyncTestClient

from dateline.ingest.app import create_app
from dateline.ingest.credentials import Credentials
from dateline.ingest.wire import CE_BATCH
from dateline.store import seal
from dateline.store.cluster import LocalCluster
from dateline.store.config import Settings
from dateline.store.connection import ClusterConnection, cluster_mode
from dateline.store.layout import Keys
from dateline.store.log import CrossPartitionBatch, Log, split
from dateline.store.seal import Sealing
from tests.e2e.processes import DATELINE
from tests.factories import encode, update
from tests.projection_helpers import HANOI, HANOI_UPDATES, HANOI_VERSION
from tests.raw import data


@pytest.fixture
def log(cluster_log: Log) -> Log:
    return cluster_log


def _stories(keys: Keys) -> list[str]:
    """One story in each partition."""
    by_part: dict[int, str] = {}
    n = 0
    while len(by_part) < keys.partitions:
        by_part.setdefault(keys.partition(f"story-{n}"), f"story-{n}")
        n += 1
    return [by_part[p] for p in range(keys.partitions)]


async def test_any_nodes_url_is_found_to_be_a_cluster(
    local_cluster: LocalCluster, log: Log
) -> None:
    assert log.cluster
    for node in local_cluster.nodes:
        assert await cluster_mode(node.url)
    # Every node's connections are ours: the closed-writer errors become ConnectionErrors.
    await log.redis.ping()
    found = log.redis.get_nodes()  # type: ignore[attr-defined]  # the cluster client's
    assert len(found) >= 3  # the masters (replicas too where it reads from them)
    assert {n.connection_class for n in found} == {ClusterConnection}
    # Appends go through a client that never retries a pipeline inside (which would
    # send its WAIT to any node); the log's own retries aim it again.
    assert log.redis.appender.retry.get_retries() == 0  # type: ignore[attr-defined]
    assert log.redis.retry.get_retries() > 0  # type: ignore[attr-defined]


async def test_a_batch_over_every_partition_lands_in_input_order(log: Log) -> None:
    stories = _stories(log.keys)
    sent = [encode(update(subject=stories[i % 8], id=f"u{i}")) for i in range(40)]
    sent.insert(5, b'{"not": "an update"}')
    results = await log.append(sent)
    assert [r.index for r in results] == list(range(41))
    assert results[5].status == "invalid"
    appended = [r for r in results if r.status == "appended"]
    assert [r.id for r in appended] == [f"u{i}" for i in range(40)]
    for story in stories:  # gap-free versions, in the order sent
        history = await log.read_story(story)
        assert [u.version for u in history] == [1, 2, 3, 4, 5]
        assert [u.id for u in history] == [f"u{i}" for i in range(40) if stories[i % 8] == story]
    again = await log.append(sent)
    assert {r.status for r in again} == {"duplicate", "invalid"}


async def test_a_split_batch_keeps_each_partitions_keys_to_itself(log: Log) -> None:
    stories = _stories(log.keys)
    prepared = log.prepare([encode(update(subject=s)) for s in stories * 2], atomic=False)
    parts = split(prepared)
    assert len(parts) == 8
    for p, part in enumerate(parts):
        assert {log.keys.partition(u.subject) for _, u in part.valid} == {p}
        assert all(f":{log.keys.tag(p)}:" in key for key in part.keys)


async def test_an_atomic_batch_keeps_to_one_partition(log: Log) -> None:
    a, b = _stories(log.keys)[:2]
    with pytest.raises(CrossPartitionBatch, match="one partition on a cluster"):
        await log.append([encode(update(subject=a)), encode(update(subject=b))], atomic=True)
    assert await log.version(a) == await log.version(b) == 0
    one = await log.append([encode(update(subject=a)), encode(update(subject=a))], atomic=True)
    assert [r.status for r in one] == ["appended", "appended"]


async def test_appends_wait_for_the_replica_of_the_slot_that_took_them(
    local_cluster: LocalCluster,
) -> None:
    log = await Log.connect(local_cluster.url, prefix=f"t{uuid.uuid4().hex[:10]}", min_replicas=-1)
    try:
        assert await log.resolve_replicas() == 1  # every master has one
        stories = _stories(log.keys)
        results = await log.append([encode(update(subject=s)) for s in stories])
        assert {r.status for r in results} == {"appended"}
        streamed = [
            r.status
            async for rs in log.append_stream([[encode(update(subject=s))] for s in stories])
            for r in rs
        ]
        assert streamed == ["appended"] * len(stories)
    finally:
        await log.close()


async def test_a_sealed_log_on_a_cluster_is_appended_by_its_function(log: Log) -> None:
    key = secrets.token_bytes(32)
    report = await seal.seal_log(log.redis, log.keys, key)
    assert report.partitions == 8
    stories = _stories(log.keys)
    results = await log.append([encode(update(subject=s)) for s in stories])
    assert {r.status for r in results} == {"appended"}
    reader = Log(log.redis, log.keys, sealing=Sealing(key, log.keys))
    for story in stories:
        (raw,) = await log.redis.lrange(log.keys.story(story), 0, -1)
        assert seal.opened(key, data(raw)) is not None  # sealed on whichever master holds it
        assert [u.subject for u in await reader.read_story(story)] == [story]


async def test_http_ingest_on_a_cluster(local_cluster: LocalCluster, log: Log) -> None:
    settings = Settings(
        local_cluster.url,
        data_dir=None,  # type: ignore[arg-type]  # an embedded server's: none here
        prefix=log.keys.prefix,
        partitions=log.keys.partitions,
    )
    token = await Credentials(log.redis, log.keys.prefix).add("wire-a", "urn:feed:test")
    headers = {"content-type": CE_BATCH, "authorization": f"Bearer {token}"}
    stories = _stories(log.keys)
    docs = [update(subject=stories[i % 8], id=f"h{i}") for i in range(16)]
    async with AsyncTestClient(app=create_app(settings, local_cluster.url)) as http:
        r = await http.post("/v1/updates", content=json.dumps(docs).encode(), headers=headers)
        assert r.status_code == 202, r.text
        assert [x["id"] for x in r.json()["results"]] == [f"h{i}" for i in range(16)]
        assert {x["version"] for x in r.json()["results"]} == {1, 2}
        docs = [update(subject=s, id=f"a-{s}") for s in stories[:2]]
        r = await http.post(
            "/v1/updates",
            content=json.dumps(docs).encode(),
            headers=headers,
            params={"atomic": "true"},
        )
        assert r.status_code == 422, r.text
        assert r.json()["type"] == "urn:dateline:problem:atomic-across-partitions"
        assert "one partition on a cluster" in r.json()["detail"]
    assert await log.version(stories[0]) == 2


def test_publish_seal_and_log_commands_on_a_cluster(local_cluster: LocalCluster) -> None:
    env = {
        **os.environ,
        "REDIS_URL": local_cluster.url,
        "DATELINE_PREFIX": f"c{uuid.uuid4().hex[:8]}",
        "DATELINE_SEAL_KEY": secrets.token_hex(32),
    }

    def dateline(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(DATELINE), *args], env=env, input=stdin, capture_output=True, check=False
        )

    sealed = dateline("seal")
    assert sealed.returncode == 0, sealed.stderr
    assert b"8 partitions marked now" in sealed.stdout
    lines = HANOI.read_bytes()
    published = dateline("publish", "-", stdin=lines)
    assert published.returncode == 0, published.stderr
    assert f"{HANOI_UPDATES} updates: {HANOI_UPDATES} appended".encode() in published.stderr
    history = dateline("log", "hanoi-summit-2019", "--json")
    assert history.returncode == 0, history.stderr
    records = [json.loads(x) for x in history.stdout.splitlines()]
    assert [r["version"] for r in records] == list(range(1, HANOI_VERSION + 1))
    assert all("seal" not in r for r in records)
    # Feeds and subscriptions are registered on the cluster (its ingest and delivery
    # need them; `test_deliver_e2e.py` runs `dateline deliver` there).
    added = dateline("feeds", "add", "wire-a", "--source", "urn:feed:a")
    assert added.returncode == 0, added.stderr
    subscribed = dateline(
        "subscriptions", "add", "http://127.0.0.1:9/hook", "--allow-private", "--name", "desk"
    )
    assert subscribed.returncode == 0, subscribed.stderr
    listed = dateline("subscriptions", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)["subscriptions"]] == ["desk"]
    letters = dateline("subscriptions", "dead-letters", "desk")
    assert letters.returncode == 0, letters.stderr
    assert letters.stdout == b"'desk' has no parked updates\n"
    removed = dateline("subscriptions", "remove", "desk")
    assert removed.returncode == 0, removed.stderr
    for command in ("dead-letters", "redrive"):  # said, not an empty answer
        gone = dateline("subscriptions", command, "desk")
        assert gone.returncode == 1
        assert b"no subscription named 'desk'" in gone.stderr
    as_of = dateline("story", "hanoi-summit-2019", "--at-version", "3")
    assert as_of.returncode == 0, as_of.stderr  # the log alone answers it
