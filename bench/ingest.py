"""Issue 4: HTTP ingest against the direct client append of the same updates, same run.

A real `dateline ingest` process (uvicorn) on loopback, a load generator in this
process with 4 requests in flight; the direct baseline appends the same batches of
100 with `Log.append`, also 4 in flight. Single-update requests give requests/s
and latency percentiles.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import msgspec
import redis.asyncio as aioredis
from tests.e2e.processes import ingest_process

from bench.harness import Report, Row
from bench.log_append import realistic_updates
from dateline.embedded import EmbeddedRedis
from dateline.ingest.credentials import Credentials
from dateline.keys import Keys
from dateline.log import Log

T = TypeVar("T")
IN_FLIGHT = 4
BATCH = 100


async def _gather_limited(jobs: list[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run every job, at most `limit` at a time, results in job order."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(j) for j in jobs))


async def run(report: Report, *, quick: bool = False) -> None:
    n = 2_000 if quick else 20_000
    singles = 300 if quick else 3_000
    print(f"ingest: {n:,} updates in batches of {BATCH}, {singles:,} single-update requests")
    payloads = realistic_updates(n + singles)
    docs = [msgspec.json.decode(p) for p in payloads]
    for d in docs:
        d["source"] = "urn:feed:bench"
    bodies = [msgspec.json.encode(d) for d in docs]
    batches = [b"[" + b",".join(bodies[i : i + BATCH]) + b"]" for i in range(0, n, BATCH)]
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp), fsync="always") as srv:
        client = aioredis.Redis.from_url(srv.url)
        # The direct baseline, on a prefix of its own.
        direct = Log(client, Keys("direct", 8))
        await direct.check_partitions()
        start = time.perf_counter()
        await _gather_limited(
            [
                lambda b=b: direct.append(b)
                for b in [bodies[i : i + BATCH] for i in range(0, n, BATCH)]
            ],
            IN_FLIGHT,
        )
        direct_rate = n / (time.perf_counter() - start)
        report.add(
            Row(
                "ingest",
                f"direct Log.append, batches of {BATCH}, {IN_FLIGHT} in flight",
                direct_rate,
                "updates/s",
            )
        )
        token = await Credentials(client, "bench").add("bench", "urn:feed:bench")
        env = {**os.environ, "REDIS_URL": srv.url, "DATELINE_PREFIX": "bench"}
        with ingest_process(env, Path(tmp) / "ingest.log") as base:
            await _measure_http(report, base, token, batches, bodies[n:], n, direct_rate)
        await client.aclose()


async def _measure_http(
    report: Report,
    base: str,
    token: str,
    batches: list[bytes],
    singles: list[bytes],
    n: int,
    direct_rate: float,
) -> None:
    auth = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=base,
        timeout=60,
        limits=httpx.Limits(max_connections=IN_FLIGHT),
    ) as http:
        batch_headers = {**auth, "content-type": "application/cloudevents-batch+json"}
        start = time.perf_counter()
        replies = await _gather_limited(
            [
                lambda b=b: http.post("/v1/updates", content=b, headers=batch_headers)
                for b in batches
            ],
            IN_FLIGHT,
        )
        rate = n / (time.perf_counter() - start)
        assert {r.status_code for r in replies} == {202}, {r.status_code for r in replies}
        report.add(
            Row(
                "ingest",
                f"HTTP POST, batches of {BATCH}, {IN_FLIGHT} in flight",
                rate,
                "updates/s",
                "direct append",
                rate / direct_rate,
                "target >= 0.5x",
            )
        )
        one_headers = {**auth, "content-type": "application/cloudevents+json"}
        latencies: list[float] = []

        async def single(body: bytes) -> int:
            t = time.perf_counter()
            r = await http.post("/v1/updates", content=body, headers=one_headers)
            latencies.append(time.perf_counter() - t)
            return r.status_code

        start = time.perf_counter()
        codes = await _gather_limited([lambda b=b: single(b) for b in singles], IN_FLIGHT)
        elapsed = time.perf_counter() - start
        assert set(codes) == {202}, set(codes)
        q = statistics.quantiles(latencies, n=100)
        report.add(
            Row(
                "ingest",
                "HTTP POST, one update a request",
                len(singles) / elapsed,
                "requests/s",
                note=f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms",
            )
        )
