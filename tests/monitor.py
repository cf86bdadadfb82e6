"""What one client sends a server, as the server's MONITOR saw it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis


async def commands_sent(
    url: str, client: aioredis.Redis, work: Callable[[], Awaitable[object]], last: str
) -> list[str]:
    """The command names `client` sent while `work` ran, up to the first `last`.

    `client` must have one connection (`max_connections=1`): its address names it
    among the server's clients."""
    ours = str((await client.client_info())["addr"])
    watcher = aioredis.Redis.from_url(url)
    seen: list[str] = []
    try:
        async with watcher.monitor() as monitor:  # on once the server said OK to it

            async def watch() -> None:
                async for event in monitor.listen():
                    if f"{event['client_address']}:{event['client_port']}" == ours:
                        seen.append(str(event["command"]).split()[0].upper())
                        if seen[-1] == last:
                            return

            watching = asyncio.create_task(watch())
            await work()
            await asyncio.wait_for(watching, 5)
    finally:
        await watcher.aclose()
    return seen
