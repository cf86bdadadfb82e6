"""The services' connection pool (`store/connection.py`, `QuickPool`): its short way
through, taken while a connection is free and nobody waits, keeps redis-py's promises:
never more connections than its size, callers past it wait their turn and are served,
a connection given back broken is made anew, nothing stays checked out."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from dateline.store.connection import QuickPool, connect


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
    pool.timeout = 0.1
    try:
        held = await pool.get_connection()
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await client.ping()
        assert pool._waiting == 0
        await pool.release(held)
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_connection_given_back_broken_is_made_anew(redis_url: str) -> None:
    client = connect(redis_url, max_connections=1)
    pool = client.connection_pool
    try:
        await client.ping()
        conn = await pool.get_connection()
        await conn.disconnect()  # the server closed it, say
        await pool.release(conn)
        assert await client.ping()  # the same connection, connected again
        assert len(pool._available_connections) == 1
    finally:
        await client.aclose()
