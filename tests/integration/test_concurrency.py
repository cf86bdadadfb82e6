"""Many writers at once: each update lands exactly once, versions stay gap-free."""

from __future__ import annotations

import asyncio
import random

import redis.asyncio as aioredis

from dateline.store.log import Log
from tests.factories import encode, update


async def test_fifty_retrying_appenders_land_each_update_once(log: Log, redis_url: str) -> None:
    stories = [f"story-{i}" for i in range(20)]
    updates = [encode(update(subject=stories[i % 20], id=f"u{i}")) for i in range(1000)]

    async def appender(seed: int) -> None:
        # Each appender has its own connection and retries the batch in its own order.
        client = aioredis.Redis.from_url(redis_url)
        mine = Log(client, log.keys)
        rng = random.Random(seed)
        try:
            for _ in range(2):
                chunk = updates[:]
                rng.shuffle(chunk)
                for start in range(0, 1000, 250):
                    results = await mine.append(chunk[start : start + 250])
                    assert {r.status for r in results} <= {"appended", "duplicate"}
        finally:
            await client.aclose()

    await asyncio.gather(*(appender(seed) for seed in range(50)))
    landed: list[str] = []
    for story in stories:
        records = await log.read_story(story)
        assert [r.version for r in records] == list(range(1, len(records) + 1))
        landed += [r.id for r in records]
    assert sorted(landed) == sorted(f"u{i}" for i in range(1000))
    streams = sum([await log.redis.xlen(k) for k in log.keys.logs()])
    assert streams == 1000


async def test_two_writers_with_the_same_expectedversion(log: Log, redis_url: str) -> None:
    await log.append([encode(update())])
    other = Log(aioredis.Redis.from_url(redis_url), log.keys)
    try:
        a, b = await asyncio.gather(
            log.append([encode(update(expectedversion=1, id="writer-a"))]),
            other.append([encode(update(expectedversion=1, id="writer-b"))]),
        )
    finally:
        await other.close()
    statuses = sorted([a[0].status, b[0].status])
    assert statuses == ["appended", "conflict"]
    records = await log.read_story("hanoi-summit-2019")
    assert len(records) == 2
    winner = a[0] if a[0].status == "appended" else b[0]
    assert records[1].id == winner.id
