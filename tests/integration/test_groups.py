"""The runner's one round trip a cycle (`runtime/groups.py`, `read_and_get`): group reads
and the parked hash sent on one connection, their replies read as the server sends them
(RESP3 maps on Valkey 8, the same on Redis 6.2 after `HELLO 3`), on both servers."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ResponseError

from dateline.runtime.groups import ensure_group, read_and_get
from dateline.store.connection import connect


async def test_reads_every_stream_and_the_hash_as_it_is_after_them(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        await client.flushall()
        for stream in ("g:a", "g:b", "g:c"):
            await ensure_group(client, stream, "grp")
        ids = [await client.xadd("g:a", {"__data__": f"a{i}", "x": "1"}) for i in range(3)]
        await client.xadd("g:b", {"__data__": "b0"})
        await client.hset("g:parked", mapping={"story-1": "0:1-0", "story-2": "3:4-0"})

        got, parked = await read_and_get(
            client, "grp", "me", [({"g:a": ">", "g:b": ">", "g:c": ">"}, 2)], None, "g:parked"
        )
        assert got == {
            "g:a": [
                (ids[0].decode(), {b"__data__": b"a0", b"x": b"1"}),
                (ids[1].decode(), {b"__data__": b"a1", b"x": b"1"}),
            ],
            "g:b": [((await client.xrange("g:b"))[0][0].decode(), {b"__data__": b"b0"})],
        }  # COUNT is a stream's; a stream with nothing new is left out
        assert parked == {"story-1": "0:1-0", "story-2": "3:4-0"}

        # Two reads in one trip: this consumer's pending entries of one stream, and what
        # is new in another (the runner's shares: a stream is in one read of a trip).
        await client.xdel("g:a", ids[0])  # deleted while pending: the server sends no fields
        b1 = await client.xadd("g:b", {"__data__": "b1"})
        got, parked = await read_and_get(
            client, "grp", "me", [({"g:a": "0"}, 10), ({"g:b": ">"}, 10)], None, "g:none"
        )
        assert got == {
            "g:a": [(ids[1].decode(), {b"__data__": b"a1", b"x": b"1"})],
            "g:b": [(b1.decode(), {b"__data__": b"b1"})],
        }
        assert parked == {}
    finally:
        await client.aclose()


async def test_a_blocking_read_waits_for_an_entry_and_an_error_leaves_the_pool_clean(
    redis_url: str,
) -> None:
    client = connect(redis_url, max_connections=1)
    try:
        await client.flushall()
        await ensure_group(client, "g:s", "grp")
        reading = asyncio.create_task(
            read_and_get(client, "grp", "me", [({"g:s": ">"}, 5)], 2000, "g:parked")
        )
        await asyncio.sleep(0.1)
        writer = connect(redis_url)
        entry = await writer.xadd("g:s", {"__data__": "late"})
        await writer.aclose()
        got, _ = await asyncio.wait_for(reading, 5)
        assert got == {"g:s": [(entry.decode(), {b"__data__": b"late"})]}

        got, _ = await read_and_get(client, "grp", "me", [({"g:s": ">"}, 5)], 50, "g:parked")
        assert got == {}  # the block ran out

        with pytest.raises(ResponseError, match="NOGROUP"):
            await read_and_get(client, "nogroup", "me", [({"g:s": ">"}, 5)], None, "g:parked")
        # The one connection came back and serves: no reply of the failed trip is left on it.
        assert await client.hgetall("g:parked") == {}
        assert await client.ping()
    finally:
        await client.aclose()
