"""The runner's one round trip a cycle (`runtime/groups.py`, `read_and_get`): group reads
and the parked hash sent on one connection, their replies read as the server sends them
(RESP3 maps on Valkey 8, the same on Redis 6.2 after `HELLO 3`), on both servers."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.exceptions import ResponseError

from dateline.runtime.groups import ensure_group, read_and_get
from dateline.store.connection import connect
from tests.raw import entries_of, text


async def test_reads_every_stream_and_the_hash_as_it_is_after_them(redis_url: str) -> None:
    client = connect(redis_url)
    k = f"g{uuid.uuid4().hex[:8]}"  # keys of its own on the session's server
    try:
        for stream in (f"{k}:a", f"{k}:b", f"{k}:c"):
            await ensure_group(client, stream, "grp")
        ids = [await client.xadd(f"{k}:a", {"__data__": f"a{i}", "x": "1"}) for i in range(3)]
        await client.xadd(f"{k}:b", {"__data__": "b0"})
        await client.hset(f"{k}:parked", mapping={"story-1": "0:1-0", "story-2": "3:4-0"})

        got, parked = await read_and_get(
            client,
            "grp",
            "me",
            [({f"{k}:a": ">", f"{k}:b": ">", f"{k}:c": ">"}, 2)],
            None,
            f"{k}:parked",
        )
        assert got == {
            f"{k}:a": [
                (text(ids[0]), {b"__data__": b"a0", b"x": b"1"}),
                (text(ids[1]), {b"__data__": b"a1", b"x": b"1"}),
            ],
            f"{k}:b": [
                (entries_of(await client.xrange(f"{k}:b"))[0][0].decode(), {b"__data__": b"b0"})
            ],
        }  # COUNT is a stream's; a stream with nothing new is left out
        assert parked == {"story-1": "0:1-0", "story-2": "3:4-0"}

        # Two reads in one trip: this consumer's pending entries of one stream, and what
        # is new in another (the runner's shares: a stream is in one read of a trip).
        await client.xdel(f"{k}:a", ids[0])  # deleted while pending: the server sends no fields
        b1 = await client.xadd(f"{k}:b", {"__data__": "b1"})
        got, parked = await read_and_get(
            client, "grp", "me", [({f"{k}:a": "0"}, 10), ({f"{k}:b": ">"}, 10)], None, f"{k}:none"
        )
        assert got == {
            f"{k}:a": [(text(ids[1]), {b"__data__": b"a1", b"x": b"1"})],
            f"{k}:b": [(text(b1), {b"__data__": b"b1"})],
        }
        assert parked == {}
    finally:
        await client.aclose()


async def test_a_blocking_read_waits_for_an_entry_and_an_error_leaves_the_pool_clean(
    redis_url: str,
) -> None:
    client = connect(redis_url, max_connections=1)
    k = f"g{uuid.uuid4().hex[:8]}"
    try:
        await ensure_group(client, f"{k}:s", "grp")
        reading = asyncio.create_task(
            read_and_get(client, "grp", "me", [({f"{k}:s": ">"}, 5)], 2000, f"{k}:parked")
        )
        await asyncio.sleep(0.1)
        writer = connect(redis_url)
        entry = await writer.xadd(f"{k}:s", {"__data__": "late"})
        await writer.aclose()
        got, _ = await asyncio.wait_for(reading, 5)
        assert got == {f"{k}:s": [(text(entry), {b"__data__": b"late"})]}

        got, _ = await read_and_get(client, "grp", "me", [({f"{k}:s": ">"}, 5)], 50, f"{k}:parked")
        assert got == {}  # the block ran out

        with pytest.raises(ResponseError, match="NOGROUP"):
            await read_and_get(client, "nogroup", "me", [({f"{k}:s": ">"}, 5)], None, f"{k}:parked")
        # The hash's reply was still on its way: the connection came back dropped (redis-py
        # would otherwise hand it out again with that reply waiting), and serves anew.
        [back] = client.connection_pool._available_connections
        assert not back.is_connected
        assert await client.hgetall(f"{k}:parked") == {}
        assert await client.ping()
    finally:
        await client.aclose()
