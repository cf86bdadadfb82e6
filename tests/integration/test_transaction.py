"""`sent_whole` (`store/connection.py`): a rebuild's chunk of writes in one round trip,
applied as one transaction on one server, so that under `appendfsync always` the server
fsyncs once for the chunk rather than once for each 16 KB of it it reads; on a cluster,
a transaction a slot, each on its node (`tests/integration/test_slot_writes.py`)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from dateline.store.connection import connect, open_client, sent_whole
from tests.monitor import commands_sent

pytestmark = pytest.mark.cluster_too


async def _client(url: str, where: str) -> aioredis.Redis:
    return await open_client(url) if where == "cluster" else connect(url, max_connections=1)


def _keys(n: int) -> list[str]:
    prefix = f"whole-{uuid.uuid4().hex[:8]}"
    return [f"{prefix}:{i}" for i in range(n)]


async def test_commands_sent_whole_are_applied_and_answered_in_order(url: str, where: str) -> None:
    client = await _client(url, where)
    keys = _keys(50)  # over many slots on a cluster
    try:
        commands: list[tuple[Any, ...]] = [("SET", k, f"v{i}") for i, k in enumerate(keys)]
        commands += [("RPUSH", keys[0] + ":list", "a", "b"), ("GET", keys[7])]
        replies = await sent_whole(client, commands)
        assert len(replies) == len(commands)
        assert replies[-2:] == [2, b"v7"]
        assert [await client.get(k) for k in keys] == [f"v{i}".encode() for i in range(50)]
    finally:
        for key in [*keys, keys[0] + ":list"]:  # a key a call: a cluster's are in many slots
            await client.delete(key)
        await client.aclose()


async def test_a_command_that_fails_inside_raises_naming_the_error(url: str, where: str) -> None:
    client = await _client(url, where)
    [word, after] = _keys(2)
    try:
        with pytest.raises(ResponseError, match="not an integer"):
            await sent_whole(client, [("SET", word, "x"), ("INCR", word), ("SET", after, "1")])
        # A transaction applies the rest of it, as a pipeline would: the caller, told,
        # does not switch to what it wrote (a rebuild fails whole).
        assert await client.get(after) == b"1"
    finally:
        for key in (word, after):
            await client.delete(key)
        await client.aclose()


@pytest.mark.one_server("a cluster's commands go to many nodes: no transaction spans them")
async def test_on_one_server_the_commands_run_between_multi_and_exec(url: str) -> None:
    client = connect(url, max_connections=1)  # one connection: the one MONITOR names
    keys = _keys(3)
    try:
        seen = await commands_sent(
            url, client, lambda: sent_whole(client, [("SET", k, "1") for k in keys]), "EXEC"
        )
        assert seen == ["MULTI", "SET", "SET", "SET", "EXEC"]
    finally:
        await client.delete(*keys)
        await client.aclose()
