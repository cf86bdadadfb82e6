"""Story reads the query process already made, kept until a commit of their partition.

A dashboard polls; many dashboards read the same few stories. Each read of a story
costs a round trip and the server's time, for bytes that change only when the
projector commits that story's partition, which it announces on the change channel
(`Doorbell`, `<partition>:<checkpoint>` for each commit, then the stories it wrote there
if it wrote 64 at most). So the process keeps what it read (the state with its
statements, and where the story is parked) and drops the stories a commit names, or all
of a partition's when a commit names none:

- only while the doorbell's subscription stands: from its confirmation on (all is
  dropped then, as messages before it were not heard), not after it broke;
- a read that began before a drop does not put what it read in (a generation count
  per partition, moved by every commit of it, named or not), so an older state never
  lands after the news of a newer one;
- a read-your-writes wait (`min_position`) that sees its partition's checkpoint drops
  that partition itself: the checkpoint may be read before the message is;
- every entry at most `max_age_s` old, against a message not heard for any other
  reason; and at most `max_bytes` in all, the least recently read dropped first.

A read answers from here what the read models held when the process last heard of
that partition: one commit's message later than Redis, in microseconds on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Generic, TypeVar

from dateline.query.views import Stamp, stamp_of
from dateline.runtime.metrics import KEPT_READS
from dateline.store.doorbell import READERS

_STORY_HIT, _STORY_MISS = KEPT_READS.labels("story", "hit"), KEPT_READS.labels("story", "miss")
_LIST_HIT, _LIST_MISS = KEPT_READS.labels("list", "hit"), KEPT_READS.labels("list", "miss")
LISTINGS = 256
"""Lists of stories kept at most (by limit, status, overdue, scope)."""


@dataclass(frozen=True)  # no slots: `stamp` is cached in its __dict__
class Kept:
    at: float
    size: int
    partition: int
    raw: bytes | None
    parked: str | None
    rendered: dict[Hashable, tuple[bytes, str, float]] = field(default_factory=dict)
    """What a route made of it, by whatever its answer depends on: (bytes, their ETag,
    good until this `time.time()`). Dropped with it."""

    @cached_property
    def stamp(self) -> Stamp:
        """The state's version and position, decoded once: each stream of a story asks at
        each ring, and a decode scans the whole state (a third of a process's CPU, with
        50 streams of a story of 5.4 MB)."""
        return stamp_of(self.raw)


class StoryCache:
    def __init__(
        self,
        partitions: int,
        partition_of: Callable[[str], int],
        *,
        max_bytes: int = 32 << 20,
        max_age_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.partition_of = partition_of
        self.max_bytes, self.max_age_s, self.clock = max_bytes, max_age_s, clock
        self.live = False
        """The doorbell's subscription stands: what is kept is dropped when it must be."""
        self._entries: OrderedDict[tuple[str, str], Kept] = OrderedDict()
        self._members: list[set[tuple[str, str]]] = [set() for _ in range(partitions)]
        self._bytes = 0
        self._generation = [0] * partitions
        self._large: set[tuple[str, str]] = set()
        """The stories last read too large to keep (`too_large`), until all is dropped."""
        self._versions: set[str] = set()
        """The projection versions of what was kept: a story is kept once a version."""
        self.hits = 0
        self._listings: dict[Hashable, tuple[bytes, str, float]] = {}
        self.listings_generation = self.listing_hits = 0
        """Moves on with every drop: a listing reads every partition."""

    @property
    def on(self) -> bool:
        return self.live and self.max_bytes > 0

    def generation(self, story: str) -> int:
        """Take before reading `story` from Redis; give to `put` with what was read."""
        return self._generation[self.partition_of(story)]

    def get(self, version: str, story: str) -> Kept | None:
        kept = self.held(version, story)
        if kept is None:
            _STORY_MISS.inc()
            return None
        self.used(version, story)
        return kept

    def held(self, version: str, story: str) -> Kept | None:
        """What is kept of `story`, counted as neither a hit nor a miss: for a caller that
        calls `used` if it answers from it, and leaves the rest to `get`."""
        kept = self._entries.get((version, story)) if self.on else None
        if kept is None or self.clock() - kept.at > self.max_age_s:
            return None
        return kept

    def used(self, version: str, story: str) -> None:
        """A read answered from what is kept of `story`: a hit, and the last one dropped."""
        self._entries.move_to_end((version, story))
        self.hits += 1
        _STORY_HIT.inc()

    def put(
        self, version: str, story: str, generation: int, raw: bytes | None, parked: str | None
    ) -> Kept:
        """What was read, kept if it may be; returned either way."""
        partition = self.partition_of(story)
        size = 2 * len(raw or b"") + len(story) + 100  # with one rendering of it
        kept = Kept(self.clock(), size, partition, raw, parked)
        key = (version, story)
        if size > self.max_bytes // 8:  # one story does not push out the rest
            self._large.add(key)
            return kept
        self._large.discard(key)
        if not self.on or generation != self._generation[partition]:
            return kept  # dropped meanwhile: what was read may be older than what was heard
        self._forget(key)
        self._versions.add(version)
        self._entries[key] = kept
        self._members[partition].add(key)
        self._bytes += size
        while self._bytes > self.max_bytes:
            self._forget(next(iter(self._entries)))
        return kept

    def too_large(self, version: str, story: str) -> bool:
        """Was `story` too large to keep when last read? Then each of its live streams
        read it whole, each ring of its bell: theirs share one read (`Reader.story_since`)."""
        return (version, story) in self._large

    def _forget(self, key: tuple[str, str]) -> None:
        kept = self._entries.pop(key, None)
        if kept is not None:
            self._bytes -= kept.size
            self._members[kept.partition].discard(key)

    def listing(self, key: Hashable) -> tuple[bytes, str] | None:
        """A list of stories a route rendered (its bytes and ETag), while no commit to
        any partition has been heard and its `until` (`time.time()`) has not passed."""
        kept = self._listings.get(key) if self.on else None
        if kept is None or time.time() >= kept[2]:
            _LIST_MISS.inc()
            return None
        self.listing_hits += 1
        _LIST_HIT.inc()
        return kept[0], kept[1]

    def put_listing(
        self, key: Hashable, generation: int, body: bytes, tag: str, until: float
    ) -> None:
        if not self.on or generation != self.listings_generation:
            return
        if len(self._listings) >= LISTINGS:
            self._listings.clear()
        age_bound = time.time() + self.max_age_s
        self._listings[key] = (body, tag, min(until, age_bound))

    def heard(self, message: bytes | None, live: bool) -> None:
        """The doorbell's news: a message of the change channel, or None when its
        subscription was made (`live`) or broke (not `live`)."""
        self.live = live
        if message == READERS:
            return  # of readers, not of stories
        head, _, news = (message or b"").partition(b":")
        if message is None or not head.isdigit():  # a switch of versions, say
            self.drop_all()
            return
        # `<partition>:<checkpoint>[ <story> ...]`: a commit that names the stories it
        # wrote there (`projector.commit.named`) leaves the partition's others kept.
        _, *stories = news.split(b" ")
        if stories:
            self.drop_stories(int(head), [s.decode() for s in stories])
        else:
            self.drop_partition(int(head))

    def drop_partition(self, partition: int) -> None:
        if not 0 <= partition < len(self._generation):
            self.drop_all()
            return
        self._generation[partition] += 1
        self._drop_listings()
        for key in self._members[partition]:
            self._bytes -= self._entries.pop(key).size
        self._members[partition] = set()

    def drop_stories(self, partition: int, stories: list[str]) -> None:
        """A commit of `partition` wrote these stories. A read of any story of the
        partition that began before it is not kept (`generation`): it cannot say which
        commits it saw."""
        if not 0 <= partition < len(self._generation):
            self.drop_all()
            return
        self._generation[partition] += 1
        self._drop_listings()
        for story in stories:
            for version in self._versions:
                self._forget((version, story))

    def drop_all(self) -> None:
        self._generation = [g + 1 for g in self._generation]
        self._drop_listings()
        self._entries.clear()
        self._members = [set() for _ in self._members]
        self._bytes = 0
        # A switch of versions leaves the old one's names behind for good; a large story
        # of the new one is known again at its next read, which `put` sees.
        self._large.clear()
        self._versions.clear()

    def _drop_listings(self) -> None:
        self.listings_generation += 1
        self._listings.clear()


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedReads(Generic[K, V]):
    """One read for every live stream that asks the same thing between two rings of the
    doorbell: dashboards on the live index all wake on a commit at the same cursor, and
    each read that commit's page from Redis for itself (the server's time an update grew
    with every dashboard open).

    A stream may take a read another began if both took the doorbell's same bell (its
    `current()`) before asking. That read began after every ring they had heard, so it
    holds what those commits wrote; a commit it missed rings that bell, and they read
    again. A failed read is not kept: the next asks anew."""

    def __init__(self, kind: str) -> None:
        """`kind`: what is read, as the kept reads' metric names it."""
        self._reads: dict[K, tuple[asyncio.Event, asyncio.Future[V]]] = {}
        self._hit, self._miss = KEPT_READS.labels(kind, "hit"), KEPT_READS.labels(kind, "miss")

    async def read(self, key: K, bell: asyncio.Event, read: Callable[[], Awaitable[V]]) -> V:
        found = self._reads.get(key)
        if found is not None and found[0] is bell:
            self._hit.inc()
            # Shielded: a stream that goes away cancels its wait, not the others' read.
            return await asyncio.shield(found[1])
        self._miss.inc()
        self.forget_rung()
        task = asyncio.ensure_future(read())
        self._reads[key] = (bell, task)
        task.add_done_callback(lambda done: self._drop_failed(key, done))
        return await asyncio.shield(task)

    def forget_rung(self) -> None:
        """Let go of the reads whose bell has rung: given to the doorbell (`rung`), not
        only swept at the next read. When every live stream waited on its client, none
        read, and each one's last page (behind, its own) stayed here after they were
        gone."""
        for stale in [k for k, (rung, _) in self._reads.items() if rung.is_set()]:
            del self._reads[stale]

    def _drop_failed(self, key: K, done: asyncio.Future[V]) -> None:
        if done.cancelled() or done.exception() is not None:
            found = self._reads.get(key)
            if found is not None and found[1] is done:
                del self._reads[key]

    def __len__(self) -> int:
        return len(self._reads)


class InFlight(Generic[K, V]):
    """At most one read of a story at a time, shared by every request it may answer, and
    one waiting behind it for those it may not: handed to each as the same `Kept`, so
    rendered once too.

    Without it a thousand dashboards asking for a story just committed (its kept read
    dropped), or one too large to keep, each read and rendered it: 1,000 reads of a story
    of 16,000 statements (5.4 MB an answer) took a query process from 84 MB to 925.

    A request joins the running read only if no commit of the story's partition was
    heard since it began (the generation it began with is today's): a read begun before
    a commit heard is never handed to a request after it. Those that come after one wait
    for the running read to end and share the next, which begins then, with the
    generation of then; a request past that one joins it too, as it begins after them
    all. (Joined only under the generation it began with, while commits came faster
    than a read took, each request began a read of its own: a copy of a long story and
    its rendering each, in memory at once.) A failed read fails those who joined it; the
    next one reads anew; a request that goes away does not cancel a read."""

    def __init__(self, kind: str) -> None:
        """`kind`: what is read, as the kept reads' metric names it."""
        self._lanes: dict[K, _Lane[V]] = {}
        self._joined = KEPT_READS.labels(kind, "joined")
        self._queued = KEPT_READS.labels(kind, "queued")

    async def read(
        self, key: K, generation: Callable[[], int], read: Callable[[int], Awaitable[V]]
    ) -> V:
        """`read(the generation it begins with)`, or the share of one that will do."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        wanted: asyncio.Future[V]
        if lane.running is None and lane.next is None:
            at = generation()
            wanted = lane.running = asyncio.ensure_future(read(at))
            lane.at = at
            wanted.add_done_callback(lambda done: self._done(key, lane, done))
        elif lane.running is not None and lane.at == generation():
            self._joined.inc()
            wanted = lane.running
        else:
            self._queued.inc()
            if lane.next is None:
                lane.next = asyncio.ensure_future(self._after(lane, generation, read))
                lane.next.add_done_callback(lambda done: self._done(key, lane, done))
            wanted = lane.next
        # Shielded: a request that goes away cancels its wait, not the others' read.
        return await asyncio.shield(wanted)

    async def _after(
        self, lane: _Lane[V], generation: Callable[[], int], read: Callable[[int], Awaitable[V]]
    ) -> V:
        if lane.running is not None:
            await asyncio.wait([lane.running])  # its outcome is its own joiners'
        lane.running, lane.next, lane.at = lane.next, None, generation()
        return await read(lane.at)

    def _done(self, key: K, lane: _Lane[V], done: asyncio.Future[V]) -> None:
        if lane.running is done:
            lane.running = None
        if lane.next is done:  # cancelled before it began
            lane.next = None
        if lane.running is None and lane.next is None and self._lanes.get(key) is lane:
            del self._lanes[key]
        if not done.cancelled():
            done.exception()  # retrieved: when every waiter went, no "never retrieved"

    def __len__(self) -> int:
        return len(self._lanes)


class _Lane(Generic[V]):
    """One story's reads in `InFlight`: the one running (begun with generation `at`),
    and the one to run after it."""

    __slots__ = ("at", "next", "running")

    def __init__(self) -> None:
        self.running: asyncio.Future[V] | None = None
        self.at = -1
        self.next: asyncio.Future[V] | None = None
