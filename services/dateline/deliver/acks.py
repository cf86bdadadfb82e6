"""A subscription's acknowledgements, written together (a group commit).

An update a receiver acknowledged leaves the outbox in a transaction
(`Subscriptions.delivered`), and the worker sends a story's next update only once that
is written. A transaction each was about a quarter of the service's CPU: 299 us a
delivery against 223 once written together (`docs/speed.md`, "Deliveries"). The
stories of a round go side by side, so their acknowledgements come in bunches: each
waits for the write that carries it, and those that come while a write is under way
go together in the next one. Order holds as before (a story waits for its own), and a
crash before a write sends what it would have carried again, as before: receivers
drop a `webhook-id` they have seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Done = list[tuple[str, int]]
"""(outbox entry, the receiver's status) of each acknowledged delivery."""


class Acknowledgements:
    """Writes `(entry, status)` pairs with `write`, as many a call as have come."""

    def __init__(self, write: Callable[[Done], Awaitable[None]]) -> None:
        self._write = write
        self._queued: Done = []
        self._next: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def add(self, entry: str, status: int) -> None:
        """Returns once a write that carried it is made; raises what that write raised.
        A caller cancelled meanwhile leaves the write to the others (it is shielded)."""
        self._queued.append((entry, status))
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next.add_done_callback(_seen)
        carried = self._next
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        await asyncio.shield(carried)

    async def _drain(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            told, self._next = self._next, None
            assert told is not None  # noqa: S101 - set with the first of the batch
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                told.cancel()
                raise
            except Exception as exc:  # each waiter raises it: its story stops there
                told.set_exception(exc)
            else:
                told.set_result(None)


def _seen(done: asyncio.Future[None]) -> None:
    """A failure all its waiters left (cancelled) is not one nobody looked at."""
    if not done.cancelled():
        done.exception()
