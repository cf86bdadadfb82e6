"""Rings for a runner on a cluster: a partition's new entries wake it, not a poll.

On one server a cycle that found nothing blocks in one `XREADGROUP` over every
partition it holds. A cluster has no such read: each partition's stream is a slot of
its own, so the runner polled, 1 ms doubling to 25 ms, each poll a read a partition.
On the local cluster that cost a projector 4.5% of a core idle and 1.5 ms of CPU an
update at 300 updates/s (1.7 cycles an update, 8 reads each), most of it in the event
loop's system calls.

Here, while the runner waits, a task a partition held waits in a blocking `XREAD` (no
group: it moves nothing and acknowledges nothing) for the first entry past what the
group delivered, on a connection of its own to the slot's node, and rings when one
comes. The runner wakes at the first ring and reads the partitions that rang, and reads
every partition when its wait times out: a ring is a hint, never the only way an entry
is found. While cycles find entries the runner reads every partition each cycle, as it
did, and the waiters rest: a ring a cycle a partition would cost more than the reads
it spares (at 1,000 updates/s, 0.68 against 0.58 ms of the projector's CPU an update).
A waiter that fails (a node lost, a slot moved, a user without `XREAD`) is counted out
until its next wait succeeds, and while any is out the runner polls as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import NoPermissionError

from dateline.domain.positions import stream_id
from dateline.runtime import groups
from dateline.runtime.metrics import POLLED
from dateline.store.connection import described

log = structlog.get_logger("dateline.runtime")

BLOCK_MS = 2_000
"""How long one `XREAD` of a waiter blocks before it asks again (what it waits past may
have moved meanwhile: a read of the runner's, a partition handed over)."""
RETRY_S = (0.05, 2.0)
"""A failed waiter's pause before it tries again, from the first to the longest."""
LEFT_S = 10.0
"""A waiter whose runner has not looked for rings this long stops (its runner stopped
without closing it, or hangs): it would hold a connection and ask the node for nothing.
The runner's next look starts it again."""


class Wakes:
    """The waiters of one runner's partitions, and what rang since the runner last looked.

    `since(stream)`: how far the runner knows the group delivered the stream (the last
    entry its reads of new entries returned), or None; a waiter then asks the group.
    Entries up to there are read already: a ring for one of them is dropped.
    """

    def __init__(
        self, client: aioredis.Redis, group: str, since: Callable[[str], str | None]
    ) -> None:
        self.client, self.group, self.since = client, group, since
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._watching: set[str] = set()
        self._failing: set[str] = set()
        """Streams whose waiter's last try failed: `dateline_partitions_polled`."""
        self._rung: dict[str, str] = {}
        self._read: dict[str, asyncio.Event] = {}
        self._bell = asyncio.Event()
        self._armed = asyncio.Event()
        """Set while the runner waits for a ring: the waiters wait with it."""
        self._looked = time.monotonic()
        self.rings = 0
        """Rings heard (each a cycle the runner did not have to poll for)."""

    def follow(self, streams: Iterable[str]) -> None:
        """Watch these streams, and no others: a waiter started for each new one, and
        stopped for each let go (its connection dropped with its blocked read)."""
        wanted = set(streams)
        self._looked = time.monotonic()
        for stream in [s for s, task in self._tasks.items() if task.done()]:
            del self._tasks[stream]  # stopped by itself (`LEFT_S`): started again below
        for stream in self._tasks.keys() - wanted:
            self._tasks.pop(stream).cancel()
            self._watching.discard(stream)
            self._mend(stream)
            self._rung.pop(stream, None)
            self._read.pop(stream, None)
        for stream in wanted - self._tasks.keys():
            self._watching.add(stream)  # until its wait fails
            self._read[stream] = asyncio.Event()
            self._tasks[stream] = asyncio.create_task(self._watch(stream), name=f"wake {stream}")

    def unwatched(self, streams: Iterable[str]) -> set[str]:
        """Of `streams`, those no waiter is watching now: the runner reads them each cycle."""
        return {s for s in streams if s not in self._watching}

    def busy(self) -> None:
        """The runner reads every partition each cycle for now: waiters rest once their
        waits end (a ring, or the block's time)."""
        self._armed.clear()

    def was_read(self, streams: Iterable[str]) -> None:
        """The runner read these streams' new entries: their waiters may wait again, and
        what they rang before is read."""
        for stream in streams:
            self._rung.pop(stream, None)
            if (read := self._read.get(stream)) is not None:
                read.set()

    async def wait(self, within: float) -> set[str]:
        """The streams that rang with entries past what the runner read, as soon as one
        does; an empty set if none did `within` seconds."""
        deadline = time.monotonic() + within
        self._armed.set()
        while True:
            self._looked = time.monotonic()
            for stream, entry in list(self._rung.items()):
                if not self._past(stream, entry):  # rang for what was read since
                    del self._rung[stream]
                    self._read[stream].set()
            if self._rung:
                return set(self._rung)
            self._bell.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return set()
            await _within(self._bell, left)

    async def close(self) -> None:
        """Stop every waiter, and wait until they have (their blocked reads dropped)."""
        tasks = list(self._tasks.values())
        self.follow(())
        if tasks:
            await asyncio.wait(tasks)

    def _past(self, stream: str, entry: str) -> bool:
        read = self.since(stream)
        return read is None or stream_id(entry) > stream_id(read)

    async def _watch(self, stream: str) -> None:
        pause = RETRY_S[0]
        seen: str | None = None
        failing = False
        me = asyncio.current_task()
        while self._tasks.get(stream) is me and time.monotonic() - self._looked < LEFT_S:
            await _within(self._armed, LEFT_S)
            if not self._armed.is_set():
                continue
            try:
                # Whatever came past `since`, before this read reached the node too, it
                # answers at once.
                since = await self._start(stream, seen)
                reply: Any = await self.client.xread({stream: since}, count=1, block=BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: counted out, the runner polls meanwhile
                if self._tasks.get(stream) is me:
                    self._watching.discard(stream)
                    self._fail(stream)
                if not failing:  # once, not at every try
                    failing = True
                    _warn_failing(stream, exc)
                await asyncio.sleep(pause)
                pause = min(RETRY_S[1], pause * 2)
                continue
            if self._tasks.get(stream) is not me:
                break  # let go while it waited
            self._watching.add(stream)
            self._mend(stream)  # also a failure a waiter before it left (`LEFT_S`) counted
            if failing:
                failing = False
                log.info("partition waiter back; rings again", stream=stream)
            pause = RETRY_S[0]
            entry = _first_id(reply)
            if entry is None:
                continue  # its block ran out: wait again, past what was read meanwhile
            seen = entry
            read = self._read[stream]
            read.clear()
            self._rung[stream] = entry
            self.rings += 1
            self._bell.set()
            await _within(read, LEFT_S)
        if self._tasks.get(stream) is me:
            self._watching.discard(stream)

    def _fail(self, stream: str) -> None:
        # Counted up and down, not set: the gauge is the process's, and a test's process
        # holds runners of the same group side by side.
        if stream not in self._failing:
            self._failing.add(stream)
            POLLED.labels(self.group).inc()

    def _mend(self, stream: str) -> None:
        if stream in self._failing:
            self._failing.discard(stream)
            POLLED.labels(self.group).dec()

    async def _start(self, stream: str, seen: str | None) -> str:
        """Where a wait starts: past what the runner read, and what this waiter saw."""
        known = self.since(stream)
        if known is None:  # no group yet, or nothing delivered: everything is new
            known = await groups.last_delivered(self.client, stream, self.group) or "0-0"
        if seen is not None and stream_id(seen) > stream_id(known):
            return seen
        return known


async def _within(event: asyncio.Event, seconds: float) -> None:
    """Wait until `event` is set, or `seconds` have passed. Not `asyncio.wait_for`, which
    on Python 3.11 can lose a cancellation that comes as the event is set: a waiter
    stopped that way went on waiting, and `close` with it, until `LEFT_S` ran out."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _warn_failing(stream: str, exc: Exception) -> None:
    hint = (
        "grant the service's Redis user +xread and +xinfo|groups (deploy/users.acl)"
        if isinstance(exc, NoPermissionError)
        else "it tries again, up to every 2 s"
    )
    log.warning(
        "partition waiter failed; its partition is polled until it is back",
        stream=stream,
        error=described(exc),
        hint=hint,
    )


def _first_id(reply: Any) -> str | None:
    """The id of the entry an `XREAD` of one stream, `COUNT 1`, returned, if any."""
    if not reply:
        return None
    items = reply.values() if isinstance(reply, dict) else (entries for _, entries in reply)
    for entries in items:
        for entry in entries:
            eid = entry[0]
            return eid.decode() if isinstance(eid, bytes) else str(eid)
    return None
