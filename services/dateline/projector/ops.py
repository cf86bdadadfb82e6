"""What on-call engineers do to projections: rebuild a story, redrive, look at lag."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis

from dateline.consumer import DeadLetters, groups
from dateline.consumer.leases import Leases
from dateline.keys import Keys
from dateline.log import Log
from dateline.projection import project
from dateline.projector.readmodels import ReadModels

SHOW_PARKED = 100
"""Parked stories `status` names; it counts all of them."""


async def rebuild_story(log: Log, models: ReadModels, story: str) -> int:
    """Fold `story` from the log into the read models of `models`; returns its version.

    WATCHes the story's read model so that a projector writing it at the same time
    makes this attempt start over rather than be overwritten by an older state.
    """
    while True:
        async with log.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*models.keys_of(story))
                old, _ = await models.recall(pipe, story)
                new = project(story, await log.read_story(story))
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                models.write(pipe, old, new)
                pipe.publish(models.changes, str(log.keys.partition(story)))
                await pipe.execute()
                return new.version
            except aioredis.WatchError:
                continue


async def redrive(log: Log, models: ReadModels, dead: DeadLetters, story: str) -> tuple[int, int]:
    """After a fix: rebuild the parked story from the log, then release it. (version, dropped)."""
    version = await rebuild_story(log, models, story)
    return version, await dead.release(story)


@dataclass
class PartitionStatus:
    partition: int
    length: int
    checkpoint: str | None
    lag: int
    lag_seconds: float
    pending: int
    lease: str | None


async def status(
    client: aioredis.Redis, keys: Keys, models: ReadModels, group: str
) -> dict[str, Any]:
    rows = []
    now_ms = time.time() * 1000
    checkpoints = cast(dict[bytes, bytes], await client.hgetall(models.checkpoint))
    leases = Leases(client, f"{keys.prefix}:{group}", owner="", ttl_ms=0)  # read only
    holders = await leases.holders(keys.partitions)
    for p in range(keys.partitions):
        stream = keys.log(p)
        cp = checkpoints.get(str(p).encode())
        after = f"({cp.decode()}" if cp else "-"
        waiting = cast(list[Any], await client.xrange(stream, min=after, count=10_000))
        oldest = int(waiting[0][0].decode().split("-")[0]) if waiting else None
        rows.append(
            PartitionStatus(
                partition=p,
                length=int(await client.xlen(stream)),
                checkpoint=cp.decode() if cp else None,
                lag=len(waiting),
                lag_seconds=round((now_ms - oldest) / 1000, 1) if oldest else 0.0,
                pending=await groups.pending_count(client, stream, group),
                lease=holders[p],
            )
        )
    dead = DeadLetters(client, keys.prefix, group)
    parked = await dead.parked()
    versions = sorted(
        {
            k.decode().split(":")[-2]
            async for k in client.scan_iter(match=f"{keys.prefix}:rm:*:checkpoint", count=1000)
        }
    )
    active = await client.get(f"{keys.prefix}:rm:active")
    shapes = [await client.get(ReadModels(keys.prefix, v).shape) for v in versions]
    return {
        "group": group,
        "partitions": [msgspec.to_builtins(r) for r in rows],
        "processes": await leases.alive(),  # the live processes sharing the partitions
        "dead_letters": {
            **await dead.counts(),
            # The first ones by name, each with the update that parked it: for a page.
            "stories": [
                {"story": s, "parked_at": p} for s, p in sorted(parked.items())[:SHOW_PARKED]
            ],
        },
        "projection": {
            "active": active.decode() if isinstance(active, bytes) else None,
            "versions": versions,
            # What each version's read models hold (readmodels.SHAPE); 1 if never stamped.
            "shapes": {v: int(s or 1) for v, s in zip(versions, shapes, strict=True)},
        },
    }
