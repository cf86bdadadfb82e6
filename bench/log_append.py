"""Issue 2: appends/s through the log against raw pipelined XADD of the same bytes.

Both run in one process against one embedded Valkey, in batches of 1,000, under
appendfsync always (dateline's default) and everysec, so the ratio and the cost
of durability come from the same run on the same machine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import redis.asyncio as aioredis
from tests.factories import encode, update

from bench.harness import Report, Row, median_rate
from dateline.embedded import EmbeddedRedis
from dateline.keys import Keys
from dateline.log import Log
from dateline_schemas import TYPES, decode_update

BATCH = 1000


def realistic_updates(n: int, stories: int = 200) -> list[bytes]:
    """Every update type in turn, spread over `stories` stories, as feeds send them."""
    types = sorted(TYPES)
    return [
        encode(update(types[i % len(types)], subject=f"story-{i % stories:04d}", id=f"b{i:08d}"))
        for i in range(n)
    ]


async def run(report: Report, *, quick: bool = False) -> None:
    n = 5_000 if quick else 50_000
    runs = 1 if quick else 3
    payloads = realistic_updates(n)
    bodies = [decode_update(p).body for p in payloads]
    size = sum(map(len, payloads)) / n
    print(f"log append: {n:,} updates of {size:.0f} bytes on average, batches of {BATCH}")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp), fsync="always") as srv:
        client = aioredis.Redis.from_url(srv.url)
        log = Log(client, Keys("bench", 8))

        async def reset() -> None:
            await client.flushall()
            await log.check_partitions()

        async def raw_xadd() -> None:
            for start in range(0, n, BATCH):
                pipe = client.pipeline(transaction=False)
                for body in bodies[start : start + BATCH]:
                    pipe.xadd("raw", {"__data__": body})
                await pipe.execute()

        batches = [payloads[start : start + BATCH] for start in range(0, n, BATCH)]

        async def appends() -> None:
            for batch in batches:
                results = await log.append(batch)
                assert results[-1].status == "appended", results[-1]

        async def streamed() -> None:
            async for results in log.append_stream(batches):
                assert results[-1].status == "appended", results[-1]

        for fsync in ("always", "everysec"):
            await client.config_set("appendfsync", fsync)
            raw = await median_rate(runs, n, raw_xadd, reset)
            report.add(Row("log append", f"raw pipelined XADD, fsync {fsync}", raw, "updates/s"))
            one = await median_rate(runs, n, appends, reset)
            report.add(
                Row(
                    "log append",
                    f"Log.append, batch after batch, fsync {fsync}",
                    one,
                    "updates/s",
                    f"raw XADD, fsync {fsync}",
                    one / raw,
                )
            )
            ours = await median_rate(runs, n, streamed, reset)
            report.add(
                Row(
                    "log append",
                    f"Log.append_stream, fsync {fsync}",
                    ours,
                    "updates/s",
                    f"raw XADD, fsync {fsync}",
                    ours / raw,
                    "target >= 0.5x",
                )
            )
            if fsync == "always":
                durable = ours
            else:
                report.add(
                    Row(
                        "log append",
                        "cost of fsync always",
                        durable / ours,
                        "x everysec",
                        note="append rate under always / under everysec",
                    )
                )
        await reset()
        await appends()
        used = 0
        async for key in client.scan_iter(match="bench:*", count=1000):
            used += int(await client.memory_usage(key, samples=0) or 0)
        report.add(
            Row(
                "log append",
                "memory: log + history + dedup",
                used / n,
                "bytes/update",
                note=f"payload {size:.0f} bytes",
            )
        )
        await client.aclose()
