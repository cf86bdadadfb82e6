"""Issue 4: HTTP ingest against the direct client append of the same updates, same run.

A real `dateline ingest` process (uvicorn) on loopback, a load generator in this
process (bench/loadgen.py: raw keep-alive HTTP/1.1, so the client costs little) on 4
connections; the direct baseline appends the same batches of
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
from functools import partial
from pathlib import Path
from typing import TypeVar

import msgspec
from tests.e2e.processes import ingest_process

from bench.harness import Report, Row
from bench.loadgen import Request, send_all
from bench.log_append import realistic_updates
from dateline.ingest.credentials import Credentials
from dateline.store.connection import connect
from dateline.store.embedded import EmbeddedRedis
from dateline.store.layout import Keys
from dateline.store.log import Log

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


ROUNDS = 3


def _bodies(n: int, tag: str) -> list[bytes]:
    """`n` realistic updates as a feed would send them, ids unique to `tag`."""
    docs = [msgspec.json.decode(p) for p in realistic_updates(n)]
    for d in docs:
        d["source"], d["id"] = "urn:feed:bench", f"{tag}-{d['id']}"
    return [msgspec.json.encode(d) for d in docs]


async def run(report: Report, *, quick: bool = False) -> None:
    n = 2_000 if quick else 20_000
    singles = 300 if quick else 3_000
    print(
        f"ingest: {n:,} updates in batches of {BATCH}, direct and over HTTP, alternating, "
        f"median of {ROUNDS}; {singles:,} single-update requests"
    )
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp), fsync="always") as srv:
        client = connect(srv.url)  # the services' client: commands packed by hiredis
        direct = Log(client, Keys("direct", 8))  # the baseline, on a prefix of its own
        await direct.check_partitions()
        token = await Credentials(client, "bench").add("bench", "urn:feed:bench")
        # No rate limit: one token sends as fast as it can, which is what is measured.
        env = {**os.environ, "REDIS_URL": srv.url, "DATELINE_PREFIX": "bench"}
        env["DATELINE_RATE_LIMIT"] = "0"
        auth = {"Authorization": f"Bearer {token}"}
        batch_headers = {**auth, "Content-Type": "application/cloudevents-batch+json"}
        direct_rates, http_rates = [], []
        with ingest_process(env, Path(tmp) / "ingest.log") as base:
            # Alternate the two, so that a slow moment of a shared machine hits both.
            for r in range(ROUNDS):
                bodies = _bodies(n, f"d{r}")
                chunks = [bodies[i : i + BATCH] for i in range(0, n, BATCH)]
                start = time.perf_counter()
                await _gather_limited([partial(direct.append, c) for c in chunks], IN_FLIGHT)
                direct_rates.append(n / (time.perf_counter() - start))
                bodies = _bodies(n, f"h{r}")
                requests = [
                    Request("POST", "/v1/updates", batch_headers, b"[" + b",".join(c) + b"]")
                    for c in [bodies[i : i + BATCH] for i in range(0, n, BATCH)]
                ]
                start = time.perf_counter()
                replies = await send_all(base, requests, IN_FLIGHT)
                http_rates.append(n / (time.perf_counter() - start))
                assert {a.status for a in replies} == {202}, {a.status for a in replies}
            direct_rate, http_rate = statistics.median(direct_rates), statistics.median(http_rates)
            report.add(
                Row(
                    "ingest",
                    f"direct Log.append, batches of {BATCH}, {IN_FLIGHT} in flight",
                    direct_rate,
                    "updates/s",
                    note=f"median of {ROUNDS}",
                )
            )
            report.add(
                Row(
                    "ingest",
                    f"HTTP POST, batches of {BATCH}, {IN_FLIGHT} connections",
                    http_rate,
                    "updates/s",
                    "direct append",
                    http_rate / direct_rate,
                    "target >= 0.5x; per round: "
                    + ", ".join(
                        f"{h / d:.2f}x" for h, d in zip(http_rates, direct_rates, strict=True)
                    ),
                )
            )
            await _singles(report, base, auth, _bodies(singles, "s"))
        await client.aclose()


async def _singles(report: Report, base: str, auth: dict[str, str], bodies: list[bytes]) -> None:
    one = {**auth, "Content-Type": "application/cloudevents+json"}
    start = time.perf_counter()
    answers = await send_all(
        base, [Request("POST", "/v1/updates", one, b) for b in bodies], IN_FLIGHT
    )
    elapsed = time.perf_counter() - start
    assert {a.status for a in answers} == {202}, {a.status for a in answers}
    q = statistics.quantiles([a.seconds for a in answers], n=100)
    report.add(
        Row(
            "ingest",
            f"HTTP POST, one update a request, {IN_FLIGHT} connections",
            len(bodies) / elapsed,
            "requests/s",
            note=f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms",
        )
    )
