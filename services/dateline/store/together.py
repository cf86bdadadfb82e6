"""Awaitables side by side, every one of them finished before a failure is raised.

`asyncio.gather` raises the first failure at once and leaves the others running: a
caller that then retries, parks or answers does so while its other writes are still
landing. Seen: the fan-out raised for one subscription's outbox while another's was
still being written, and the kit, parking the update, found that outbox without it
and noted it as missed, so a redrive would have sent it twice (a CI run, one in
many). Here every step has landed or failed when the caller goes on; the first failure
is raised, and any other is added to its notes, so none is dropped unseen. Reads side
by side too: a bare `gather` marks a second failure retrieved without a word.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar, cast, overload

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")


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


@overload
async def side_by_side(a: Awaitable[A], b: Awaitable[B], /) -> tuple[A, B]: ...
@overload
async def side_by_side(a: Awaitable[A], b: Awaitable[B], c: Awaitable[C], /) -> tuple[A, B, C]: ...
async def side_by_side(*steps: Awaitable[Any]) -> tuple[Any, ...]:
    """`gathered` for steps of different types: their results as a tuple, each typed."""
    return tuple(await gathered(*steps))
