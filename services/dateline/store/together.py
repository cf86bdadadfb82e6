"""Awaitables side by side, every one of them finished before a failure is raised.

`asyncio.gather` raises the first failure at once and leaves the others running: a
caller that then retries, parks or answers does so while its other writes are still
landing. Seen: the fan-out raised for one subscription's outbox while another's was
still being written, and the kit, parking the update, found that outbox without it
and noted it as missed, so a redrive would have sent it twice (a CI run, one in
many). Here every step has landed or failed when the caller goes on; the first failure
is raised, and any other is added to its notes, so none is dropped unseen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar, cast

T = TypeVar("T")


async def gathered(*steps: Awaitable[T]) -> list[T]:
    """Each step's result, in order, once all finished; else the first failure. A
    cancellation of the caller cancels them all, as `asyncio.gather` does."""
    done: list[T | BaseException] = await asyncio.gather(*steps, return_exceptions=True)
    failed = [d for d in done if isinstance(d, BaseException)]
    if failed:
        first, *others = failed
        for other in others:
            first.add_note(f"alongside it, another step failed: {other!r}")
        raise first
    return cast(list[T], done)
