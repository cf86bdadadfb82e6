"""The client's command packing: hiredis's bytes are redis-py's bytes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dateline.store.connection import (
    LARGE,
    UNREACHABLE,
    Connection,
    SSLConnection,
    UnixConnection,
    _LocalKeys,
    connect,
    server_of,
    within,
)

COMMANDS = [
    ("SET", "story", "héllo"),
    (b"EVALSHA", b"abc", 2, b"k1", b"k2", 1.5, -3, b"", "x" * 70_000),
    ("CONFIG GET", "appendfsync"),
    (b"CLIENT SETNAME", b"projector"),
    ("XADD", "log", "*", "__data__", memoryview(b'{"id":"u1"}')),
    # Scores as the read models send them, and numbers at the edges of their formatting.
    ("ZADD", "k", 1551312000.123, "a", 0.1 + 0.2, "b", 1e20, "c", -0.0, "d", float("inf"), "e"),
    ("HSET", "k", "n", 2**63, "m", -(2**40), "f", 3.0),
]
BLOB = b'{"id":"u1"}' * 2_000
CARRYING = [
    # As an append sends its bodies: a few words, and one large blob.
    ("EVALSHA", "abc", 3, "k1", "k2", "k3", "1", b"\x93\x01", BLOB),
    ("EVALSHA", "abc", 1, "k1", "", BLOB),
    # Anywhere, twice, beside each kind of word.
    (b"EVALSHA", BLOB, 2, 1.5, -3, b"", "h\u00e9", BLOB[:-1], memoryview(b"m")),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0]))
def test_packs_the_bytes_redis_py_packs(args: tuple[object, ...]) -> None:
    ours, theirs = Connection(), aioredis.Connection()
    packed = ours.pack_command(*args)  # type: ignore[arg-type]
    assert len(packed) == 1  # one buffer from hiredis, not redis-py's pieces
    assert packed[0] == b"".join(bytes(p) for p in theirs.pack_command(*args))  # type: ignore[arg-type]


@pytest.mark.parametrize("args", CARRYING, ids=lambda a: str(len(a)))
def test_a_large_blob_is_sent_as_it_is_in_the_bytes_redis_py_packs(
    args: tuple[object, ...],
) -> None:
    """Not copied into the command (hiredis copies at about a nanosecond a byte)."""
    ours, theirs = Connection(), aioredis.Connection()
    packed = ours.pack_command(*args)  # type: ignore[arg-type]
    assert b"".join(packed) == b"".join(bytes(p) for p in theirs.pack_command(*args))  # type: ignore[arg-type]
    blobs = [a for a in args if isinstance(a, bytes) and len(a) > LARGE]
    assert blobs  # each case carries one
    assert [p for p in packed if len(p) > LARGE] == blobs
    assert all(any(p is blob for p in packed) for blob in blobs)


def test_a_bytearray_goes_to_redis_py_packing() -> None:
    args = ("SET", "k", bytearray(b"v"))
    expected = b"".join(bytes(p) for p in aioredis.Connection().pack_command(*args))
    assert b"".join(Connection().pack_command(*args)) == expected


@pytest.mark.parametrize("bad", [None, True])
def test_an_argument_redis_cannot_take_is_refused_as_redis_py_refuses_it(bad: object) -> None:
    with pytest.raises(DataError, match="Invalid input of type"):
        Connection().pack_command("SET", "k", bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "cls"),
    [
        ("redis://127.0.0.1:6399/0", Connection),
        ("rediss://127.0.0.1:6399/0", SSLConnection),
        ("unix:///tmp/dateline.sock", UnixConnection),
    ],
)
async def test_connect_picks_the_packing_connection_for_the_scheme(url: str, cls: type) -> None:
    client = connect(url)
    try:
        assert client.connection_pool.connection_class is cls
    finally:
        await client.aclose()


class _Said:
    """Stands for a client: keeps the words of the command a redis-py method sends."""

    def __init__(self) -> None:
        self.args: tuple[Any, ...] = ()

    def execute_command(self, *args: Any, **options: Any) -> None:
        self.args = args


async def test_the_keys_of_redis_pys_stream_reads_are_found_without_asking_a_node() -> None:
    """redis-py sends their keywords as bytes (`b"STREAMS"`): until 2026-12-03 none was
    found, and every group read of a projector on a cluster asked a node for its keys,
    a round trip of its own (`COMMAND GETKEYS`) before the read."""
    parser = _LocalKeys()  # no node: asking one would fail
    said = _Said()
    aioredis.Redis.xreadgroup(said, "g", "c", {"a{p1}": ">", "b{p1}": ">"}, count=5, block=10)  # type: ignore[call-overload]
    assert await parser.get_keys(*said.args) == ("a{p1}", "b{p1}")
    aioredis.Redis.xread(said, {"s{p2}": "0-0"}, count=3)  # type: ignore[call-overload]
    assert await parser.get_keys(*said.args) == ("s{p2}",)
    fcall = ("FCALL_RO", "fn", 2, "k1", "k2", "arg")
    assert await parser.get_keys(*fcall) == ("k1", "k2")


async def test_within_answers_what_comes_in_time_and_gives_up_as_an_outage() -> None:
    """What gives up is one of `UNREACHABLE`, so every caller that waits out an outage
    (or answers without the server) treats a server that says nothing as one that is
    gone; and the call given up on is cancelled, not left running."""
    assert await within(1.0, asyncio.sleep(0, "answer")) == "answer"
    never = asyncio.get_running_loop().create_future()

    async def waits() -> None:
        await never

    waiting = asyncio.ensure_future(waits())
    with pytest.raises(UNREACHABLE) as raised:
        await within(0.01, waiting)
    assert isinstance(raised.value, RedisTimeoutError)
    assert str(raised.value) == "no answer within 0.01 s"
    assert waiting.cancelled()
    for url, named in (
        ("redis://10.1.2.3:6380/0", "10.1.2.3:6380"),
        ("unix:///run/dateline/log.sock", "/run/dateline/log.sock"),
    ):
        client = aioredis.Redis.from_url(url)
        with pytest.raises(UNREACHABLE) as raised:
            await within(0.01, asyncio.get_running_loop().create_future(), client)
        assert str(raised.value) == f"no answer within 0.01 s (server {named})"
        await client.aclose()
    cluster = RedisCluster.from_url("redis://10.1.2.3:7000")
    assert server_of(cluster) == "the cluster at 10.1.2.3:7000"  # no connection made
