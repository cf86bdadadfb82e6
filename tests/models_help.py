"""Read a version's read models whole, whatever their layout (one region, or one a partition)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as aioredis

from dateline.store.layout import ModelKeys, Region
from tests.raw import data

Dump = dict[str, Any]


async def hash_all(
    client: aioredis.Redis, models: ModelKeys, key: Callable[[Region], str]
) -> dict[bytes, bytes]:
    """The hash `key` names in every region, merged (their fields are disjoint)."""
    found: dict[bytes, bytes] = {}
    for region in models.regions:
        found.update(cast(dict[bytes, bytes], await client.hgetall(key(region))))
    return found


async def zset_all(
    client: aioredis.Redis, models: ModelKeys, key: Callable[[Region], str]
) -> list[tuple[bytes, float]]:
    """The sorted set `key` names in every region, merged, by score then member."""
    found: list[tuple[bytes, float]] = []
    for region in models.regions:
        found += cast(
            list[tuple[bytes, float]], await client.zrange(key(region), 0, -1, withscores=True)
        )
    return sorted(found, key=lambda pair: (pair[1], pair[0]))


def members(pairs: list[tuple[bytes, float]]) -> list[bytes]:
    return [member for member, _ in pairs]


def newest_first(pairs: list[tuple[bytes, float]]) -> list[bytes]:
    """Members as ZREVRANGE orders them: the highest score first, then the greatest member."""
    return [member for member, _ in reversed(pairs)]


__all__ = ["hash_all", "members", "newest_first", "zset_all"]


async def index_entries(
    client: aioredis.Redis, models: ModelKeys, stories: list[str]
) -> list[bytes | None]:
    """These stories' index entries, each from its region's index (None: not there)."""
    found = [await client.hget(models.region_of(story).index, story) for story in stories]
    return [None if f is None else data(f) for f in found]


async def dump(client: aioredis.Redis, prefix: str, version: str) -> Dump:
    """Every key of a version's read models, named without the version, with its value."""
    base = f"{prefix}:rm:{version}:"
    out: Dump = {}
    async for raw in client.scan_iter(match=f"{base}*", count=1000):
        key = bytes(raw).decode()
        kind = cast(bytes, await client.type(key)).decode()
        match kind:
            case "string":
                value: Any = await client.get(key)
            case "list":
                value = await client.lrange(key, 0, -1)
            case "hash":
                value = await client.hgetall(key)
            case "zset":
                value = await client.zrange(key, 0, -1, withscores=True)
            case _:
                value = await client.smembers(key)
        out[key.removeprefix(base)] = value
    return out
