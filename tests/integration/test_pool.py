"""The services' connection pool (`store/connection.py`, `QuickPool`): its short way
through, taken while a connection is free and nobody waits, keeps redis-py's promises:
never more connections than its size, callers past it wait their turn and are served,
a connection given back broken is made anew, nothing stays checked out."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dateline.store.connection import QuickPool, connect, in_turn


async def test_callers_past_the_pool_wait_their_turn_and_every_one_is_served(
    redis_url: str,
) -> None:
    client = connect(redis_url, max_connections=2)
    pool = client.connection_pool
    assert isinstance(pool, QuickPool)
    peak = 0

    async def hold(n: int) -> object:
        nonlocal peak
        # BLPOP on an empty list keeps its connection for 50 ms: 2 at a time, 4 rounds.
        reply = await client.blpop([f"pool-test:{n}"], timeout=0.05)
        peak = max(peak, len(pool._in_use_connections) + len(pool._available_connections))
        return reply

    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await asyncio.gather(*(hold(n) for n in range(8))) == [None] * 8
        assert loop.time() - start >= 0.15  # they took turns: 2 connections for 8 callers
        assert peak <= 2
        # Callers that arrive while others wait go behind them, through redis-py's
        # condition, and the pool ends as it began: nothing checked out.
        assert await asyncio.gather(*(client.ping() for _ in range(50))) == [True] * 50
        assert not pool._in_use_connections
        assert pool._waiting == 0
    finally:
        await client.aclose()


async def test_a_caller_that_waits_too_long_is_told_and_the_pool_serves_after(
    redis_url: str,
) -> None:
    client = connect(redis_url, max_connections=1)
    pool = client.connection_pool
    pool.timeout = 0.1  # type: ignore[attr-defined]  # redis-py's BlockingConnectionPool
    try:
        held = await pool.get_connection()  # type: ignore[no-untyped-call]
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await client.ping()
        assert pool._waiting == 0  # type: ignore[attr-defined]
        await pool.release(held)
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_connection_given_back_broken_is_made_anew(redis_url: str) -> None:
    client = connect(redis_url, max_connections=1)
    pool = client.connection_pool
    try:
        await client.ping()
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        await conn.disconnect()  # the server closed it, say
        await pool.release(conn)
        assert await client.ping()  # the same connection, connected again
        assert len(pool._available_connections) == 1
    finally:
        await client.aclose()


async def test_replies_in_turn_may_take_longer_than_a_timeout_all_told(redis_url: str) -> None:
    """`in_turn` bounds each reply by the socket timeout from the one before, not the
    batch: six BLPOPs of 0.15 s each answer at 0.15 to 0.9 s, past one deadline of 1.5
    timeouts (0.6 s) that was never moved on, each well within a timeout of the last."""
    client = connect(redis_url, socket_timeout=0.4)
    try:
        blocks = [("BLPOP", f"turn-test:{n}", 0.15) for n in range(6)]
        assert await in_turn(client, *blocks, ("PING",)) == [None] * 6 + [b"PONG"]
    finally:
        await client.aclose()


async def test_a_reply_later_than_the_timeout_fails_and_the_connection_is_dropped(
    redis_url: str,
) -> None:
    client = connect(redis_url, socket_timeout=0.2, max_connections=1)
    pool = client.connection_pool
    try:
        with pytest.raises(RedisTimeoutError, match=r"no reply within 0.2 s \(reply 2 of 3\)"):
            await in_turn(client, ("PING",), ("BLPOP", "turn-test:late", 1), ("PING",))
        # Its replies still on their way, the connection serves no one else: it was
        # closed, and the next call is served on it made anew.
        assert not pool._in_use_connections
        assert all(not c.is_connected for c in pool._available_connections)
        assert await in_turn(client, ("PING",)) == [b"PONG"]
    finally:
        await client.aclose()
