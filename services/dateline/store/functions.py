"""The read scripts the query service runs, called as server functions where they exist.

A script runs with its caller's rights, and a user who may `EVAL` may run any script,
however long: one loop in Lua holds the whole server. So the query user is granted no
`EVAL` (`deploy/users.acl`): it calls the functions of one read-only library
(`FCALL_RO`), which another user loads (the projector, when it starts; `LOAD`).
Functions live in the server's data (its AOF and RDB, and its replicas), so a restart
keeps them. A server without functions (Redis 6.2) runs the same scripts by
`EVALSHA`, and its query user needs `EVAL` for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dateline.store import scripts
from dateline.store.connection import in_turn, is_cluster

logger = structlog.get_logger("dateline.store")

READS = ("story", "applied", "parked_at", "newest", "heads")
"""The scripts of the query service's read library."""


def no_functions(error: ResponseError) -> bool:
    """Is `error` a server's answer that it has no functions (Redis 6.2)?"""
    return "unknown command" in str(error).lower()


async def load(client: aioredis.Redis, names: Sequence[str] = READS) -> bool:
    """Put the library of `names` on the server; False where the server has no functions
    or this user may not load them. Loading it again is nothing."""
    library = scripts.library(*names)
    try:
        await client.function_load(library.code)
    except NoPermissionError:
        return False
    except ResponseError as e:
        if no_functions(e):
            return False
        if "already exists" not in str(e):
            raise
    return True


class ReadFunctions:
    """Calls the read scripts by `FCALL_RO` where the server has functions, by `EVALSHA`
    where it has not (decided at the first call, once)."""

    def __init__(self, client: aioredis.Redis, names: Sequence[str] = READS) -> None:
        self.client = client
        self.library = scripts.library(*names)
        self._scripts = {n: scripts.bound(client, n) for n in names}
        self._functions: bool | None = None  # None: not known yet
        self._cluster = is_cluster(client)

    async def __call__(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._functions is not False:
            function = self.library.functions[name]
            try:
                reply = await self._fcall(function, keys, args)
            except ResponseError as e:
                if no_functions(e):
                    self._functions = False
                elif "function not found" not in str(e).lower():
                    raise
                elif await load(self.client, tuple(self._scripts)):
                    logger.info("read library loaded", library=self.library.name)
                    self._functions = True
                    return await self._fcall(function, keys, args)
                else:
                    return await self._script(name, keys, args)
            else:
                self._functions = True
                return reply
        return await self._script(name, keys, args)

    async def _fcall(self, function: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """`FCALL_RO`. On one server as the projector's reads are sent (`in_turn`: no
        retry wrapper, command stack or reply callback); a read is safe to send twice,
        so one whose connection failed goes again through the client's own path, which
        retries a lost connection (`connect(retry_lost=True)`). On a cluster, through
        the client, to the keys' node."""
        if self._cluster:
            return await self.client.fcall_ro(function, len(keys), *keys, *args)
        try:
            [reply] = await in_turn(self.client, ("FCALL_RO", function, len(keys), *keys, *args))
        except (RedisConnectionError, RedisTimeoutError):
            return await self.client.fcall_ro(function, len(keys), *keys, *args)
        return reply

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await self._scripts[name](keys=keys, args=args)
        except NoPermissionError as e:
            if self._functions is False:
                raise
            raise NoPermissionError(
                f"the read library {self.library.name} is not on the server, and this user "
                "may neither load it nor run scripts: start the projector, which loads it "
                f"({e})"
            ) from e
