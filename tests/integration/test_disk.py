"""What a server says of its disk (`store/disk.py`), read from real servers: one, a
cluster's primaries, and one whose user may not ask."""

from __future__ import annotations

import time
import uuid
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from dateline.runtime import status
from dateline.store.connection import connect
from dateline.store.disk import describe, disks
from dateline.store.log import Log
from tests.e2e.processes import free_port

BUSY = "local i = 0 while i < tonumber(ARGV[1]) do i = i + 1 end return i"


async def test_a_slow_command_is_a_stall_the_report_names(log: Log) -> None:
    client = log.redis
    ask = cast(Any, client).execute_command
    before = str(
        (await client.config_get("latency-monitor-threshold"))["latency-monitor-threshold"]
    )
    await client.config_set("latency-monitor-threshold", 1)
    try:
        await ask("LATENCY", "RESET")
        # Long enough to pass 1 ms on any machine that runs the suite, short for the server.
        await client.eval(BUSY, 0, 3_000_000)
        (disk,) = await disks(client)
    finally:
        await client.config_set("latency-monitor-threshold", before)
        await ask("LATENCY", "RESET")
    assert disk.problem is None
    assert disk.aof and disk.aof_bytes and disk.aof_bytes > 0, disk
    assert disk.rewritten_bytes is not None and disk.last_write == "ok"
    (stall,) = [s for s in disk.stalls if s.event == "command"]
    assert stall.latest_ms >= 1 and stall.worst_ms >= stall.latest_ms
    assert abs(stall.at - time.time()) < 60
    text = "\n".join(describe(disk, time.time()))
    assert f"stall: command {stall.latest_ms} ms, " in text, text
    assert "AOF " in text and "THE LAST AOF WRITE FAILED" not in text
    status.record_disks([disk])  # what /metrics shows of it
    labels = {"server": disk.server}
    assert REGISTRY.get_sample_value("dateline_server_aof_write_failed", labels) == 0
    assert REGISTRY.get_sample_value(
        "dateline_server_aof_bytes", {**labels, "kind": "current"}
    ) == float(disk.aof_bytes)


async def test_a_user_refused_info_gets_a_report_that_says_so(log: Log, redis_url: str) -> None:
    name, password = f"nodisk-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = log.redis
    await admin.acl_setuser(
        name,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-info", "-latency"],
    )
    parts = urlsplit(redis_url)
    where = parts._replace(netloc=f"{name}:{password}@{parts.hostname}:{parts.port}")
    refused = connect(urlunsplit(where))
    try:
        (disk,) = await disks(refused)
    finally:
        await refused.aclose()
        await admin.acl_deluser(name)
    assert disk.problem is not None and "not allowed" in disk.problem, disk
    assert not disk.aof and not disk.stalls
    assert "its disk could not be read (not allowed" in describe(disk, time.time())[0]


async def test_a_cluster_reports_each_primary(cluster_log: Log) -> None:
    client: aioredis.Redis = cluster_log.redis
    found = await disks(client)
    assert len(found) == 3  # the local cluster's three primaries, not their replicas
    assert len({d.server for d in found}) == 3
    assert all(d.problem is None and d.aof for d in found), found


async def test_a_server_that_does_not_answer_is_named_not_fatal() -> None:
    gone = connect(f"redis://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        (disk,) = await disks(gone)
    finally:
        await gone.aclose()
    assert disk.problem is not None and disk.problem.startswith("unreachable: "), disk


async def test_a_full_server_is_said_first_and_its_memory_in_the_metrics(log: Log) -> None:
    """At its maxmemory under noeviction a server refuses writes, and appends and commits
    wait: the report says so before anything else, and /metrics has both figures."""
    client = log.redis
    policy = str((await client.config_get("maxmemory-policy"))["maxmemory-policy"])
    most = str((await client.config_get("maxmemory"))["maxmemory"])
    (roomy,) = await disks(client)
    assert roomy.policy == policy and roomy.max_bytes == int(most), roomy
    assert roomy.used_bytes and roomy.used_bytes > 0
    text = describe(roomy, time.time())
    assert not any("FULL" in line for line in text)
    assert not roomy.full and b'"full"' not in msgspec.json.encode(roomy)
    if roomy.max_bytes:
        assert any(line.startswith("  memory ") for line in text), text
    await client.config_set("maxmemory-policy", "noeviction")
    await client.config_set("maxmemory", roomy.used_bytes // 2)
    try:
        (full,) = await disks(client)
    finally:
        await client.config_set("maxmemory", most)
        await client.config_set("maxmemory-policy", policy)
    assert full.full and b'"full":true' in msgspec.json.encode(full)  # what the page reads
    first = describe(full, time.time())[0]
    assert first.startswith(f"server {full.server}: FULL: "), first
    assert "refuses writes until ops make room" in first
    status.record_disks([full])
    labels = {"server": full.server}
    used = REGISTRY.get_sample_value("dateline_server_memory_bytes", {**labels, "kind": "used"})
    cap = REGISTRY.get_sample_value("dateline_server_memory_bytes", {**labels, "kind": "max"})
    assert used == float(full.used_bytes or 0) and cap == float(full.max_bytes or 0)
    assert used >= cap > 0
