"""Typed raw reads for tests that look at Redis directly.

redis-py types a reply as what any client could get back (`bytes | str`, a list or
None); every client of these tests decodes nothing, so a reply is bytes. These say so
once, and fail loudly if a reply is not what a test's client returns.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry as a client that decodes nothing reads it: (id, fields)."""


def data(value: object) -> bytes:
    """A string reply, which must be there."""
    assert isinstance(value, bytes), f"expected bytes from Redis, got {value!r}"
    return value


def text(value: object) -> str:
    """A string reply as text."""
    return data(value).decode()


def entries_of(reply: object) -> list[Entry]:
    """The entries of an `XRANGE`, an `XREVRANGE`, or one stream of an `XREADGROUP`."""
    assert isinstance(reply, list), f"expected a list of entries, got {reply!r}"
    out: list[Entry] = []
    for entry_id, fields in reply:
        assert isinstance(fields, dict)
        out.append((data(entry_id), fields))
    return out


def items(reply: object) -> list[bytes]:
    """An `LRANGE`'s reply."""
    assert isinstance(reply, list), f"expected a list, got {reply!r}"
    return [data(v) for v in reply]


async def script_calls(client: aioredis.Redis) -> dict[str, int]:
    """How many times the server ran `EVAL`, `EVALSHA` and `SCRIPT` (any subcommand: Redis
    6.2 counts them as one) so far, by `INFO commandstats`; on a cluster, on all its nodes."""
    if isinstance(client, RedisCluster):
        every = [await client.info("commandstats", target_nodes=n) for n in client.get_nodes()]
    else:
        every = [await client.info("commandstats")]
    calls = {"eval": 0, "evalsha": 0, "script": 0}
    for stats in every:
        for name, stat in stats.items():
            command = name.removeprefix("cmdstat_").split("|")[0]
            if command in calls:
                calls[command] += int(stat["calls"])
    return calls
