"""Reads of the read models, of the log, and waits for the projection to reach a position."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT

from dateline.domain import project
from dateline.domain.overdue import is_overdue
from dateline.domain.positions import Cursor, Position, stream_id
from dateline.domain.state import Hidden, StoryState
from dateline.domain.story import Ref, project_for_reader, recalled
from dateline.query.boardpage import Board, read_page
from dateline.query.cache import InFlight, Kept, SharedReads, StoryCache
from dateline.query.carried import Carried
from dateline.query.paging import Mark, Place
from dateline.query.views import ListedStory, Stamp
from dateline.runtime import DeadLetters
from dateline.store.connection import UNREACHABLE, in_turn, is_cluster, sent
from dateline.store.doorbell import Doorbell
from dateline.store.functions import ReadFunctions
from dateline.store.layout import Keys, Region
from dateline.store.log import Log, story_or_none
from dateline.store.readmodels import (
    BOARDS_BY_TIME,
    DEFAULT_VERSION,
    DUE_INDEX,
    SHAPE,
    STATUS_INDEXES,
    ReadModels,
    ScheduleEntry,
    read_active,
    read_checkpoints,
    stamped_shape,
)
from dateline.store.replies import as_text_or_none, pairs
from dateline.store.seal import Sealing
from dateline.store.together import side_by_side
from dateline_schemas import decode_records

NEWEST_IN_ONE = 256
"""A list of at most this many stories is read and merged by one script (`newest.lua`,
one server only); a longer one by a pipeline per region and a merge here."""
PREFIX_CHUNK = 500
"""Ids a region a reader of some desks reads of the by-time index at a time
(`_newest_of`)."""
ONE_TRIP = 64
"""Entries a partition a live index stream reads at a time, in one round trip (a script:
`applied.lua`); a stream catching up may read more (`live.BEHIND_PAGE`), in two."""


class Parked(Exception):
    """The update at a position will not be in the read models until ops redrive it."""

    def __init__(self, position: Position, story: str, parked_at: str) -> None:
        behind = "" if parked_at == str(position) else f" behind the update at {parked_at},"
        super().__init__(
            f"the update at position {position} is parked:{behind} the projector could not "
            f"apply it, so story {story!r} does not show it; ops see it with `dateline dlq "
            f"show {story}` and apply it with `dateline dlq redrive {story}`"
        )
        self.position, self.story, self.parked_at = position, story, parked_at


_listed = msgspec.json.Decoder(ListedStory).decode
_scheduled = msgspec.json.Decoder(ScheduleEntry).decode


def _records(entries: list[Any] | None) -> list[tuple[bytes, bytes]]:
    """A stream's entries as the server sent them, each as (its id, its record)."""
    return [(eid, _data(fields)) for eid, fields in entries or []]


def _data(fields: list[bytes]) -> bytes:
    """A log entry's record, from its fields as the server sends them (a flat list)."""
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == b"__data__":
            return fields[i + 1]
    return b""


async def _no_records() -> list[bytes]:
    return []


async def _none() -> None:
    return None


class Unfoldable(Exception):
    """A story's history does not project: a bug in the projection, which the projector
    parks the failing update for; a read of the story as of then meets it too."""

    def __init__(self, story: str, error: Exception) -> None:
        super().__init__(
            f"story {story!r} cannot be folded from its history: the projection raised "
            f"{error!r}; the projector parks the update that does this (GET /v1/status, "
            "`dateline dlq list`)"
        )
        self.story, self.error = story, error


class NotReached(Exception):
    """The projection did not reach a position in time."""

    def __init__(self, position: Position, at: str | None, waited: float) -> None:
        super().__init__(
            f"the projection has not reached position {position} after {waited:g} s "
            f"(partition {position.partition} is at {at or 'the start'}); retry later"
        )


@dataclass
class Applied:
    """A page of what the projection has applied (`Reader.applied_since`)."""

    found: list[tuple[tuple[int, int], int, bytes]]
    """(stream id, partition, record), in stream id order."""
    more: bool
    entries: dict[str, bytes | None]
    """Their stories' index entries, as they are now."""
    pushed: dict[Hashable, Any] = field(default_factory=dict)
    """What a live stream made of this page, for the next that reads it from the same
    cursor through the same lens (`live.index_events`): a page is shared (`SharedReads`)."""


class Reader:
    """The query service's view of Redis: the active read models and the log."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        doorbell: Doorbell,
        cache_bytes: int = 32 << 20,
        seal_key: bytes | None = None,
        views: aioredis.Redis | None = None,
    ) -> None:
        """`client`: the log's server; `views`: the store of read models, if apart from it
        (`DATELINE_VIEWS_URL`), which the doorbell listens to then."""
        self.client, self.keys, self.doorbell = client, keys, doorbell
        self.views = client if views is None else views
        self.apart = self.views is not client
        """What mixes the two (a story's state and its records, the applied entries and
        their index entries) is read from each, side by side."""
        self.sealing = Sealing(seal_key, keys, skip=True)
        self.log = Log(client, keys, sealing=self.sealing)
        self.cache = StoryCache(keys.partitions, keys.partition, max_bytes=cache_bytes)
        self._story_reads: InFlight[tuple[str, str], tuple[ReadModels, Kept]] = InFlight("story")
        doorbell.listeners.append(self.cache.heard)
        self.carried = Carried(keys.partitions)
        doorbell.listeners.append(self.carried.heard)
        doorbell.pages = self.carried.page
        self._carried: tuple[object, Applied] | None = None
        self._models: ReadModels | None = None
        self._shape, self._written = 1, False
        self._reads = ReadFunctions(self.views)
        self._log_reads = self._reads if views is None else ReadFunctions(client)
        self.cluster = is_cluster(client)
        """On a cluster a read names the keys of one slot: what spans them is read apart."""
        self.sharded = is_cluster(self.views)
        """The read models on a cluster (the log's; a store of their own is one server)."""
        self._parked_read: tuple[str, asyncio.Future[dict[str, str]]] | None = None
        """The read of the parked stories running or last run, and its group."""
        self.applied: SharedReads[tuple[Cursor, int], Applied] = SharedReads("applied")
        """The live index streams' pages, one read for all that ask alike (`applied_since`)."""
        doorbell.rung.append(self.applied.forget_rung)
        self._parked_seen: tuple[float, str, dict[str, str]] = (0.0, "", {})

    async def reachable(self) -> bool:
        """Does the server answer? (A live stream waits for it through an outage.)"""
        try:
            if not await self.client.ping():
                return False
            return not self.apart or bool(await self.views.ping())
        except UNREACHABLE:
            return False

    def held_models(self) -> ReadModels | None:
        """The active version's read models if `models` would answer with no round trip."""
        return None if self._models is None or self.doorbell.switched else self._models

    async def models(self, *, fresh: bool = False) -> ReadModels:
        """The active version, cached: the doorbell refreshes it when the projector rings.
        A version nothing has written yet is asked again at the next read: the shape it
        is built with is known once a projector writes it."""
        if fresh or self._models is None or not self._written or self.doorbell.switched:
            self.doorbell.switched = False
            version = await read_active(self.views, self.keys.prefix) or DEFAULT_VERSION
            shape = await stamped_shape(self.views, self.keys.models(version))
            self._models = ReadModels(self.keys, version, SHAPE if shape is None else shape)
            self._shape, self._written = self._models.built, shape is not None
        return self._models

    async def _each_region(self, read: Callable[[Pipeline, Region], object]) -> list[Any]:
        """`read` of every region of the active version (one, or one a partition), in one
        round trip; their replies in region order, for the caller to merge."""
        models = await self.models()
        pipe = self.views.pipeline(transaction=False)
        for region in models.regions:
            read(pipe, region)
        return list(await pipe.execute())

    async def _index_entries(self, models: ReadModels, stories: list[str]) -> list[bytes | None]:
        """These stories' index entries in their order (None for one not in the index),
        each read from its region's index: one round trip."""
        at: dict[str, list[int]] = {}
        for i, story in enumerate(stories):
            at.setdefault(models.region_of(story).index, []).append(i)
        replies = await sent(
            self.views,
            [("HMGET", key, *[stories[i] for i in places]) for key, places in at.items()],
        )
        found: list[bytes | None] = [None] * len(stories)
        for places, entries in zip(at.values(), replies, strict=True):
            for i, entry in zip(places, entries, strict=True):
                found[i] = entry
        return found

    async def story(self, story: str) -> tuple[ReadModels, bytes | None, str | None]:
        """The story's state with its statements, as one JSON document, and the position
        of the update that parked the story (None if none did): one round trip, or none
        while no commit of its partition has been heard since (`StoryCache`)."""
        models, kept = await self.story_kept(story)
        return models, kept.raw, kept.parked

    async def story_kept(self, story: str) -> tuple[ReadModels, Kept]:
        """`story`, as the cache holds it (with what routes rendered of it)."""
        models = await self.models()
        if (kept := self.cache.get(models.version, story)) is not None:
            return models, kept
        if not self.cache.on:  # no commit is heard: a read begun earlier may miss one
            return await self._kept(models, story, self.cache.generation(story))
        return await self._story_reads.read(
            (models.version, story),
            lambda: self.cache.generation(story),
            lambda generation: self._kept(models, story, generation),
        )

    async def _kept(
        self, models: ReadModels, story: str, generation: int
    ) -> tuple[ReadModels, Kept]:
        raw, parked = await self._whole(models, story)
        if raw is None:  # perhaps a replay switched versions and dropped this one
            models = await self.models(fresh=True)
            raw, parked = await self._whole(models, story)
        return models, self.cache.put(models.version, story, generation, raw, parked)

    async def _whole(self, models: ReadModels, story: str) -> tuple[bytes | None, str | None]:
        raw, parked, _ = await self._read(models, story, 0, -1)
        return raw, parked

    async def _read(
        self, models: ReadModels, story: str, first: int, last: int
    ) -> tuple[bytes | None, str | None, list[bytes]]:
        history = self.keys.story(story)
        if self.apart:  # the state from the store of read models, the rest from the log
            keys = [models.story(story), models.statements(story), history]
            (state, _, _), where, listed = await side_by_side(
                self._reads("story", keys, [story, 0, -1]),  # no records: `last` < `first`
                self.client.hget(self._parked_key(models), story),
                self.client.lrange(history, first, last) if last >= first else _no_records(),
            )
            return state, as_text_or_none(cast(bytes | None, where)), cast(list[bytes], listed)
        if self.cluster:  # the parked stories are in another slot: read side by side
            keys = [models.story(story), models.statements(story), history]
            (raw, _, records), parked = await side_by_side(
                self._reads("story", keys, [story, first, last]),
                self.client.hget(self._parked_key(models), story),
            )
            return raw, as_text_or_none(cast(bytes | None, parked)), records
        keys = [models.story(story), models.statements(story), self._parked_key(models), history]
        raw, parked, records = await self._reads("story", keys, [story, first, last])
        return raw, as_text_or_none(parked), records

    def _parked_key(self, models: ReadModels) -> str:
        return self.keys.group(models.group).parked

    async def story_since(
        self, story: str, after: int, count: int
    ) -> tuple[Kept, Stamp, list[bytes]]:
        """The story's state (as read, with where it is parked, and its stamp), and its
        records past version `after` that the state has applied (up to `count`): in one
        round trip; in none while the story is kept (`StoryCache`) at version `after`
        or before it.

        A live stream of a story asks this each time its story's bell rings, and every
        story's rings at least once a second (`Doorbell.current_story`): three reads a
        stream a ring, when every stream rang on every commit, cost the query process
        0.85 ms of CPU an update with 20 streams of 20 stories at 1,000 updates a second
        over 200. What is kept says nothing moved until a commit that names the story,
        or names none of its partition, is heard.

        A story too large to keep is read once for all its streams (`story_kept`), then
        each reads its records if it needs them: read whole by each, fifty streams of a
        story of 16,000 statements (5.4 MB) held a query process at 45% of a core and
        835 MB with no commit at all."""
        models = await self.models()
        kept = self.cache.held(models.version, story)
        if kept is not None and kept.raw is not None and kept.stamp.version <= after:
            self.cache.used(models.version, story)
            return kept, kept.stamp, []
        if self.cache.on and self.cache.too_large(models.version, story):
            _, kept = await self.story_kept(story)
            stamp = kept.stamp
            upto = min(after + count, stamp.version)  # index i of the history is version i + 1
            records = (
                cast(list[bytes], await self.client.lrange(self.keys.story(story), after, upto - 1))
                if upto > after
                else []
            )
        else:
            generation = self.cache.generation(story)
            raw, parked, records = await self._read(models, story, after, after + count - 1)
            if raw is None:  # not projected yet, or a replay switched versions meanwhile
                _, kept = await self.story_kept(story)
            else:
                kept = self.cache.put(models.version, story, generation, raw, parked)
            stamp = kept.stamp
        await self.sealing.refresh(self.client)
        records = records[: max(stamp.version - after, 0)]
        return kept, stamp, self.sealing.listed_all(self.keys.partition(story), records)

    async def timeline(self, story: str) -> list[bytes]:
        models = await self.models()
        return cast(list[bytes], await self.views.lrange(models.timeline(story), 0, -1))

    async def index(self) -> list[bytes]:
        replies = await self._each_region(lambda pipe, region: pipe.hvals(region.index))
        return [entry for entries in replies for entry in entries]

    async def listed(
        self,
        limit: int | None,
        status: str | None = None,
        *,
        overdue_only: bool = False,
        now: datetime | None = None,
        prefixes: Sequence[str] = (),
        after: Place | None = None,
    ) -> tuple[list[ListedStory], dict[str, str]]:
        """The `limit` stories (of `status`; all if None; only those with an overdue item
        if `overdue_only`; only those starting with one of `prefixes`, if any) updated
        last, newest first (after the place `after`, if given: `query/paging.py`), each
        with its `parked_at` and whether an item of it is overdue at `now`; and every
        parked story (of those prefixes), with the update that parked it."""
        now = now or datetime.now(UTC)
        if overdue_only:
            ranked: Awaitable[list[bytes] | None] = _none()
        elif prefixes:
            ranked = self._newest_of(tuple(prefixes), limit, status, after)
        else:
            ranked = self._newest(limit, status, after)
        newest, parked, late = await side_by_side(
            ranked,
            self.parked(),
            self.overdue(now),
        )
        if prefixes:
            starts = tuple(prefixes)
            parked = {k: v for k, v in parked.items() if k.startswith(starts)}
            late = {s for s in late if s.startswith(starts)}
        if newest is not None:  # the by-time indexes: only `limit` entries are read
            entries = [_listed(e) for e in newest]
        else:
            found = await self.entries(sorted(late)) if overdue_only else await self.index()
            entries = [_listed(e) for e in found if e is not None]
            if prefixes:
                entries = [e for e in entries if e.id.startswith(tuple(prefixes))]
            if status is not None:
                entries = [e for e in entries if e.status == status]
            # The order of the by-time indexes, so that a page's `next` means one place
            # whichever way the next page is read.
            placed = sorted(((Place.of(e.id, e.recordedtime), e) for e in entries), reverse=True)
            entries = [e for place, e in placed if after is None or place < after][:limit]
        for e in entries:
            e.parked_at = parked.get(e.id)
            e.overdue = e.id in late
        return entries, parked

    async def overdue(self, now: datetime) -> set[str]:
        """The stories with an item overdue at `now` (`domain.overdue`): one range read of
        the items still to happen by when they fall due; the whole board for a version
        built before that index."""
        await self.models()
        if self._shape >= DUE_INDEX:
            upto = now.timestamp()
            due = await self._each_region(
                lambda pipe, region: pipe.zrangebyscore(region.schedule_due, "-inf", upto)
            )
            return {member.decode().partition("/")[0] for members in due for member in members}
        boards = await self._each_region(lambda pipe, region: pipe.hvals(region.schedule))
        return {
            e.story for board in boards for e in map(_scheduled, board) if is_overdue(e.item, now)
        }

    async def next_due(self, now: datetime) -> float:
        """When (`time.time()`) the next item not overdue at `now` falls overdue: until
        then, and until a commit, the overdue stories stay as they are. `now` itself for a
        version built before the index of due items (nothing may be kept)."""
        await self.models()
        if self._shape < DUE_INDEX:
            return now.timestamp()
        firsts = await self._each_region(
            lambda pipe, region: pipe.zrangebyscore(
                region.schedule_due, f"({now.timestamp()}", "+inf", start=0, num=1, withscores=True
            )
        )
        return min((after[0][1] for after in firsts if after), default=math.inf)

    async def _newest(
        self, limit: int | None, status: str | None, after: Place | None = None
    ) -> list[bytes] | None:
        """The `limit` stories (of `status`) updated last, newest first (after `after`);
        None if there are none there, which is also what a read model older than those
        indexes shows (then the caller reads them all), or if all are asked for."""
        models = await self.models()
        if limit is None or (status is not None and self._shape < STATUS_INDEXES):
            return None
        if not self.sharded and limit <= NEWEST_IN_ONE:  # one script: every region's slot
            keys = [
                key
                for region in models.regions
                for key in (
                    region.index_by_time if status is None else region.index_by_status(status),
                    region.index,
                )
            ]
            place = [] if after is None else [repr(after.score), after.story]
            newest_first = cast(list[bytes], await self._reads("newest", keys, [limit, *place]))
            if newest_first or after is None:
                return newest_first or None
            # Past the last page, an empty page; with no index at all, the caller reads them all.
            return [] if await self._indexed(status) else None
        if after is not None:
            return await self._newest_after(models, limit, status, after)

        def newest(pipe: Pipeline, region: Region) -> None:
            by_time = region.index_by_time if status is None else region.index_by_status(status)
            pipe.zrevrange(by_time, 0, limit - 1, withscores=True)

        ranked = cast(list[list[tuple[bytes, float]]], await self._each_region(newest))
        return await self._merged(models, ranked, limit) or None

    async def _newest_after(
        self, models: ReadModels, limit: int, status: str | None, after: Place
    ) -> list[bytes] | None:
        """`_newest` from a place on: in each region, the stories of its score with a
        smaller id (a batch's stories share their `recordedtime`), then the older ones."""

        def page(pipe: Pipeline, region: Region) -> None:
            by_time = region.index_by_time if status is None else region.index_by_status(status)
            pipe.zrevrangebyscore(by_time, after.score, after.score, withscores=True)
            pipe.zrevrangebyscore(
                by_time, f"({after.score!r}", "-inf", start=0, num=limit, withscores=True
            )

        replies = await self._each_region(page)
        ranked = []
        for i in range(0, len(replies), 2):
            ties, older = replies[i : i + 2]
            ranked.append([(m, s) for m, s in ties if m.decode() < after.story] + older)
        entries = await self._merged(models, ranked, limit)
        # Past the last page, an empty page; with no index at all, the caller reads them all.
        return entries if entries or await self._indexed(status) else None

    async def _newest_of(
        self, starts: tuple[str, ...], limit: int | None, status: str | None, after: Place | None
    ) -> list[bytes] | None:
        """`_newest` for a reader of some desks (`starts`, their stories' prefixes): each
        region's by-time index read newest first, `PREFIX_CHUNK` ids at a time, its
        stories of those desks kept until it has `limit` or ends; then merged, and only
        their index entries read. The by-time indexes hold every desk's stories, and
        their first `limit` may all be another's: this reads ids and scores past those,
        where the whole index (every story's entry, decoded and sorted) was read."""
        models = await self.models()
        if limit is None or (status is not None and self._shape < STATUS_INDEXES):
            return None
        keys = [
            region.index_by_time if status is None else region.index_by_status(status)
            for region in models.regions
        ]
        kept: list[list[tuple[bytes, float]]] = [[] for _ in keys]
        heads = tuple(start.encode() for start in starts)
        places: dict[int, Place | None] = dict.fromkeys(range(len(keys)), after)
        read_any = False
        while places:
            reads: list[tuple[EncodableT, ...]] = []
            for i, place in places.items():
                if place is None:
                    reads.append(("ZREVRANGE", keys[i], 0, PREFIX_CHUNK - 1, "WITHSCORES"))
                    continue
                # Ties first (a batch's stories share a score): those after `place`.
                score = repr(place.score)
                reads.append(("ZREVRANGEBYSCORE", keys[i], score, score, "WITHSCORES"))
                older = ("ZREVRANGEBYSCORE", keys[i], f"({score}", "-inf", "WITHSCORES")
                reads.append((*older, "LIMIT", 0, PREFIX_CHUNK))
            replies = iter(await sent(self.views, reads))
            for i, place in list(places.items()):
                # Scores as sent, made numbers only for the stories kept: most are not.
                ties = [] if place is None else pairs(next(replies))
                if place is not None:
                    ties = [p for p in ties if p[0] < place.story.encode()]
                chunk = pairs(next(replies))
                read_any = read_any or bool(ties or chunk)
                kept[i] += [(m, float(at)) for m, at in ties + chunk if m.startswith(heads)]
                if len(chunk) < PREFIX_CHUNK or len(kept[i]) >= limit:
                    del places[i]
                else:
                    places[i] = Place(float(chunk[-1][1]), chunk[-1][0].decode())
        if not read_any and not await self._indexed(status):
            return None  # a version built before the by-time indexes: read whole
        return await self._merged(models, kept, limit)

    async def _indexed(self, status: str | None) -> bool:
        """Whether the by-time index (of `status`) holds any story: a version built
        before those indexes has none, and its list is read whole."""
        counts = await self._each_region(
            lambda pipe, region: pipe.zcard(
                region.index_by_time if status is None else region.index_by_status(status)
            )
        )
        return any(counts)

    async def _merged(
        self, models: ReadModels, ranked: list[list[tuple[bytes, float]]], limit: int
    ) -> list[bytes]:
        """Each region's stories (newest first), merged as one sorted set would order
        them all: by score, then member, from the highest; the first `limit` entries."""
        merged = heapq.merge(*ranked, key=lambda pair: (pair[1], pair[0]), reverse=True)
        stories = [member.decode() for member, _ in itertools.islice(merged, limit)]
        if not stories:
            return []
        entries = await self._index_entries(models, stories)
        return [e for e in entries if e is not None]

    async def parked(self) -> dict[str, str]:
        """Every parked story of the active projection, and the update that parked it."""
        models = await self.models()
        return await DeadLetters(self.client, self.keys.prefix, models.group).parked()

    async def parked_lately(self, max_age_s: float) -> dict[str, str]:
        """`parked`, as read at most `max_age_s` ago: the index streams of this process
        share one read a period, where each had its own (an HGETALL a dashboard a
        second, which thousands of parked stories would make heavy).

        No lock: those that find the last read fresh take it at once, the rest the read
        running. Behind a lock, a thousand index streams asking each second took turns
        to look, one a turn of a loaded event loop, and spent the second in line, their
        pages unsent and held."""
        models = await self.models()
        read_at, group, parked = self._parked_seen
        if group == models.group and time.monotonic() - read_at < max_age_s:
            return parked
        running = self._parked_read
        if running is None or running[1].done() or running[0] != models.group:
            running = self._parked_read = (
                models.group,
                asyncio.ensure_future(self._read_parked(models.group)),
            )
        # Shielded: a stream that goes away cancels its wait, not the others' read.
        return await asyncio.shield(running[1])

    async def _read_parked(self, group: str) -> dict[str, str]:
        parked = await self.parked()
        self._parked_seen = (time.monotonic(), group, parked)
        return parked

    async def entries(self, stories: list[str]) -> list[bytes | None]:
        """These stories' index entries (None for a story not in the index)."""
        if not stories:
            return []
        return await self._index_entries(await self.models(), stories)

    async def speaker(self, name: str) -> list[bytes]:
        replies = await self._each_region(lambda pipe, region: pipe.hvals(region.speaker(name)))
        return [said for spoken in replies for said in spoken]

    async def schedule(self, start: float | None, end: float | None) -> list[bytes]:
        if start is None and end is None:
            boards = await self._each_region(lambda pipe, region: pipe.hvals(region.schedule))
            return [entry for board in boards for entry in board]
        # Not `+inf`: an item with no known start is there (`BOARDS_BY_TIME`), and out of range.
        low, high = "-inf" if start is None else start, "(inf" if end is None else end
        refs = await self._each_region(
            lambda pipe, region: pipe.zrangebyscore(region.schedule_by_start, low, high)
        )
        models = await self.models()
        pipe = self.views.pipeline(transaction=False)
        for region, found in zip(models.regions, refs, strict=True):
            if found:
                pipe.hmget(region.schedule, found)
        return [r for entries in await pipe.execute() for r in entries if r is not None]

    async def board_page(
        self, board: Board, limit: int, after: Mark | None, sees: Callable[[str], bool]
    ) -> tuple[list[bytes], Mark | None] | None:
        """A page of a board (the schedule, a speaker's statements) by its index
        (`boardpage`): its entries and the mark of the last if more follow. None for a
        version built before those indexes (`BOARDS_BY_TIME`): the caller reads the
        board whole."""
        models = await self.models()
        if self._shape < BOARDS_BY_TIME:
            return None
        return await read_page(self.views, models, board, limit, after, sees)

    async def checkpoints(self) -> dict[int, tuple[int, int]]:
        models = await self.models()
        found = await read_checkpoints(self.views, models)
        return {p: stream_id(at) for p, at in found.items()}

    @property
    def scripted(self) -> bool:
        """Whether a page of up to `ONE_TRIP` entries a partition is read by one script
        (`APPLIED`), which needs every partition's keys on one server: the log's, with
        the read models on it."""
        return not self.cluster and not self.apart

    async def applied_since(
        self, cursor: Cursor, count: int, bell: asyncio.Event | None = None
    ) -> Applied:
        """Log entries past `cursor` that the projection has applied, the index entries of
        their stories, and whether more wait. With `bell` (the doorbell's, taken before
        asking), a read another stream began with the same bell and cursor is shared
        (`cache.SharedReads`).

        Up to `count` entries a partition, none past its checkpoint (they are left for a
        later call), sorted by stream id: roughly the order they were recorded in,
        across partitions. Up to `ONE_TRIP` entries a partition, as a live stream reads,
        in one round trip (`APPLIED`); more, as a stream catching up reads, in two.
        """
        if bell is not None:
            return await self.applied.read(
                (cursor, count), bell, lambda: self._applied(cursor, count)
            )
        return await self._applied(cursor, count)

    async def carried_since(self, cursor: Cursor) -> Applied | None:
        """`applied_since` from the pages the doorbell carried, with no read; None if
        they do not reach as far as the commits announced (`query/carried.py`)."""
        got = self.carried.since(cursor, (await self.models()).version)
        if got is None:
            return None
        if self._carried is None or self._carried[0] is not got:  # one page for all
            self._carried = (got, Applied(got[0], False, got[1]))
        return self._carried[1]

    async def _applied(self, cursor: Cursor, count: int) -> Applied:
        models = await self.models()
        logs = [self.keys.log(p) for p in range(self.keys.partitions)]
        starts = ["{}-{}".format(*cursor.ids[p]) for p in range(self.keys.partitions)]
        if count <= ONE_TRIP and self.scripted:
            keys = [
                key
                for p, log in enumerate(logs)
                for key in (models.region(p).checkpoint, models.region(p).index, log)
            ]
            replies, named, entries = await self._reads("applied", keys, [count, *starts])
            pages = [[(eid, fields[1]) for eid, fields in rows] for rows in replies]
            stories = [s.decode() for s in named]
        elif self.apart and not self.cluster:
            pages, stories, entries = await self._applied_apart(models, logs, starts, count)
        else:
            pages, stories, entries = await self._applied_in_two(models, logs, starts, count)
        await self.sealing.refresh(self.client)
        opened = self.sealing.entry_or_none
        found = sorted(
            (stream_id(eid.decode()), p, record)
            for p, rows in enumerate(pages)
            for eid, raw in rows
            if (record := opened(p, eid.decode(), raw)) is not None
        )
        more = any(len(rows) == count for rows in pages)
        return Applied(found, more, dict(zip(stories, entries, strict=True)))

    async def _applied_apart(
        self, models: ReadModels, logs: list[str], starts: list[str], count: int
    ) -> tuple[list[list[tuple[bytes, bytes]]], list[str], list[bytes | None]]:
        """What `APPLIED` reads, with the read models in a store of their own: every
        partition's entries past the cursor in the log (one `XREAD`), then from the
        store, in one reply (`heads.lua`), every partition's checkpoint and the index
        entries of the stories those entries name; what lies past a checkpoint is left
        for a later page. A live index stream reads this each commit: a command a
        partition or a region, each reply read through redis-py, cost 1.1 ms of CPU a
        page of 8 partitions; two round trips side by side then a third, 0.7 ms."""
        [found] = await in_turn(self.client, ("XREAD", "COUNT", count, "STREAMS", *logs, *starts))
        read = dict(found.items() if isinstance(found, dict) else found or [])
        rows = [
            [(eid, raw, story_or_none(raw)) for eid, raw in _records(read.get(log.encode()))]
            for log in logs
        ]
        candidates = list(dict.fromkeys(s for entries in rows for *_, s in entries if s))
        parts = range(len(logs))
        keys = [models.region(p).checkpoint for p in parts]
        keys += [models.region_of(story).index for story in candidates]
        got = await self._reads("heads", keys, [*parts, *candidates])
        heads, indexed = got[: len(logs)], dict(zip(candidates, got[len(logs) :], strict=True))
        pages: list[list[tuple[bytes, bytes]]] = []
        stories: dict[str, bytes | None] = {}
        for entries, head in zip(rows, heads, strict=True):
            upto = stream_id(head.decode()) if head else (0, 0)
            page = [row for row in entries if stream_id(row[0].decode()) <= upto]
            stories.update((s, indexed[s]) for *_, s in page if s)
            pages.append([(eid, raw) for eid, raw, _ in page])
        return pages, list(stories), list(stories.values())

    async def _applied_in_two(
        self, models: ReadModels, logs: list[str], starts: list[str], count: int
    ) -> tuple[list[list[tuple[bytes, bytes]]], list[str], list[bytes | None]]:
        """What `APPLIED` reads, as commands: each partition's (stream id, record) up to
        its checkpoint, the stories they name, and those stories' index entries."""
        pipe = self.client.pipeline(transaction=False)
        for log, start in zip(logs, starts, strict=True):
            pipe.xrange(log, min=f"({start}", max="+", count=count)
        heads, replies = await side_by_side(read_checkpoints(self.views, models), pipe.execute())
        pages = []
        for p, rows in enumerate(replies):
            head = heads.get(p)
            upto = stream_id(head) if head else (0, 0)
            pages.append(
                [
                    (eid, f.get(b"__data__", b""))
                    for eid, f in rows
                    if stream_id(eid.decode()) <= upto
                ]
            )
        named = (story_or_none(raw) for rows in pages for _, raw in rows)
        stories = [s for s in dict.fromkeys(named) if s is not None]
        return pages, stories, await self._index_entries(models, stories)

    async def history(
        self, story: str, *, as_of: datetime | None = None, at_version: int | None = None
    ) -> list[bytes]:
        return await self.log.read_story_json(story, to_version=at_version, as_of=as_of)

    async def folded(
        self,
        story: str,
        *,
        as_of: datetime | None = None,
        at_version: int | None = None,
        gone: dict[Ref, Hidden] | None = None,
    ) -> StoryState | None:
        """What the desk knew then, folded from the story's history (not a read model);
        without the content of the updates in `gone` (`recalled`), if given."""
        records = await self.history(story, as_of=as_of, at_version=at_version)
        if not records:
            return None
        try:
            updates = decode_records(records)
            return project_for_reader(story, updates, gone) if gone else project(story, updates)
        except Exception as exc:
            raise Unfoldable(story, exc) from exc

    async def recalled(self, story: str, whole: list[bytes] | None = None) -> dict[Ref, Hidden]:
        """The story's updates recalled as erroneous by now, whatever moment is asked for;
        from `whole`, its history if the caller read it already."""
        records = whole if whole is not None else await self.history(story)
        if not any(b"canceled" in r for r in records):  # no retraction says so: no decoding
            return {}
        try:
            return recalled(decode_records(records))
        except Exception as exc:
            raise Unfoldable(story, exc) from exc

    async def _check_not_parked(self, models: ReadModels, position: Position) -> None:
        """Raise `Parked` if the update at `position` is parked or waits behind one: the
        checkpoint passes such updates, the read models never got them."""
        at = f"{position.id[0]}-{position.id[1]}"
        log = self.keys.log(position.partition)
        if self.cluster:  # the parked stories are in another slot: a second read
            reply = await self._log_reads("parked_at", [log], [at])
            if reply:
                reply[1] = await self.client.hget(self._parked_key(models), reply[0])
        else:
            reply = await self._log_reads("parked_at", [log, self._parked_key(models)], [at])
        if not reply or reply[1] is None:
            return
        story, first = reply[0].decode(), Position.parse(reply[1].decode())
        if first.id <= position.id:  # a story's updates before the one that failed applied
            raise Parked(position, story, str(first))

    async def wait_for(self, position: Position, seconds: float) -> None:
        """Return once the projection has applied `position` (read-your-writes)."""
        deadline = time.monotonic() + seconds
        at: str | None = None
        while True:
            bell = self.doorbell.current()
            models = await self.models()
            raw = await self.views.hget(
                models.region(position.partition).checkpoint, str(position.partition)
            )
            at = raw.decode() if isinstance(raw, bytes) else None
            if at is not None and stream_id(at) >= position.id:
                # The commit's message may come after this read: what is kept of the
                # partition may predate it.
                self.cache.drop_partition(position.partition)
                await self._check_not_parked(models, position)
                return
            left = deadline - time.monotonic()
            if left <= 0:  # a parked update is why, if one is: it says what to do
                await self._check_not_parked(models, position)
                raise NotReached(position, at, seconds)
            await self.doorbell.wait(bell, left)
