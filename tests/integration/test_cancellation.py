"""A task cancelled while it talks to Redis is cancelled: the cancellation is never lost.

redis-py bounds each send with `asyncio.wait_for`, which on Python 3.11 loses a
cancellation that lands as the send completes; `store/connection.py` sends under
`asyncio.timeout` instead. Without it about half of these cancellations were lost.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dateline.store.connection import connect


async def test_commands_cancelled_at_every_point_of_their_send_are_cancelled(
    redis_url: str,
) -> None:
    client = connect(redis_url)
    try:
        await client.ping()
        lost = 0
        for i in range(300):
            task = asyncio.ensure_future(client.ping())
            for _ in range(i % 7):  # cancel it 0 to 6 loop turns in: every point of a send
                await asyncio.sleep(0)
            if task.cancel():
                try:
                    await task
                    lost += 1  # cancelled, and it returned normally: the bug
                except asyncio.CancelledError:
                    pass
        assert lost == 0
        assert await client.ping()  # and the pool still serves
    finally:
        await client.aclose()


async def test_a_send_that_stalls_still_times_out(redis_url: str) -> None:
    """The send keeps its bound: one whose socket does not drain gives up after the
    socket timeout with redis-py's TimeoutError, and the connection is dropped."""
    client = connect(redis_url, socket_timeout=0.2)
    try:
        await client.ping()
        conn = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]

        async def stalled() -> None:
            await asyncio.sleep(30)

        conn._writer.drain = stalled  # the kernel buffer is full
        with pytest.raises(RedisTimeoutError, match="Timeout writing to socket"):
            await conn.send_command("PING")
        assert not conn.is_connected
        await client.connection_pool.release(conn)
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_connection_closed_under_a_send_raises_a_connection_error(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent `disconnect()` between the connect check and the write (the cluster
    client drops a node's connections when one of them fails) left redis-py 8.1 raising
    `AttributeError: 'NoneType' object has no attribute 'writelines'`: not a RedisError,
    so no retry saw it, and ingest answered 500 mid-failover. It is a ConnectionError."""
    client = connect(redis_url)
    try:
        await client.ping()
        conn = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        try:

            async def closed_meanwhile(*_: object, **__: object) -> None:
                conn._writer = None  # what disconnect() leaves

            monkeypatch.setattr(conn, "check_health", closed_meanwhile)
            with pytest.raises(RedisConnectionError, match="closed while writing"):
                await conn.send_command("PING")
            assert not conn.is_connected
        finally:
            monkeypatch.undo()
            await client.connection_pool.release(conn)
        assert await client.ping()  # the pool connects it again
    finally:
        await client.aclose()


async def test_a_connection_the_server_closed_is_said_with_the_server_s_address(
    redis_url: str,
) -> None:
    """redis-py says "Connection closed by server." without naming it; a service with
    the log's server and a store of read models logged an outage without saying which."""
    client, killer = connect(redis_url), connect(redis_url)
    try:
        conn = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        await conn.send_command("CLIENT", "ID")
        mine = await conn.read_response()
        assert await killer.client_kill_filter(_id=mine) == 1
        host, port = conn.host, conn.port
        await conn.send_command("PING")  # written to the socket before the close is seen
        with pytest.raises(RedisConnectionError) as closed:
            await conn.read_response()
        assert f"(server {host}:{port})" in str(closed.value), closed.value
        assert str(closed.value).count(f"{host}:{port}") == 1  # named once, not twice
        await client.connection_pool.release(conn)
        assert await client.ping()
    finally:
        await client.aclose()
        await killer.aclose()
