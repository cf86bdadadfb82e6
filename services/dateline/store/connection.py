"""The Redis client every service uses: redis-py's asyncio client, commands packed by hiredis.

redis-py packs a command in Python on asyncio connections and in C (hiredis) on
blocking ones (redis/redis-py#4176, open). The projector's commit sends a few hundred
arguments a batch, and packing them was a fifth of its time; hiredis packs the same
bytes. What hiredis does not take (a bytearray; a None or a bool, which redis-py
refuses with its own error) goes to redis-py's packing.
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.typing import EncodableT


def _packed(args: tuple[EncodableT, ...]) -> list[bytes] | None:
    """The command in RESP, or None where hiredis does not take an argument."""
    head = args[0]
    # As redis-py does: "CONFIG GET" is sent as two words.
    if isinstance(head, str):
        args = (*head.encode().split(), *args[1:])
    elif isinstance(head, bytes) and b" " in head:
        args = (*head.split(), *args[1:])
    try:
        return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # it checks each item
    except TypeError:
        return None


class Connection(aioredis.Connection):
    def pack_command(self, *args: EncodableT) -> list[bytes]:
        return _packed(args) or super().pack_command(*args)


class UnixConnection(aioredis.UnixDomainSocketConnection):
    def pack_command(self, *args: EncodableT) -> list[bytes]:
        return _packed(args) or super().pack_command(*args)


class SSLConnection(aioredis.SSLConnection):
    def pack_command(self, *args: EncodableT) -> list[bytes]:
        return _packed(args) or super().pack_command(*args)


_PACKING: dict[type[Any], type[Any]] = {
    aioredis.Connection: Connection,
    aioredis.UnixDomainSocketConnection: UnixConnection,
    aioredis.SSLConnection: SSLConnection,
}


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client for `url` (redis://, rediss:// or unix://); closing it closes its pool."""
    pool = aioredis.ConnectionPool.from_url(url, **options)
    pool.connection_class = _PACKING.get(pool.connection_class, pool.connection_class)
    return aioredis.Redis.from_pool(pool)
