"""A page of the schedule board read by its index (`schedule:by_start`), not whole.

The board's order is `Mark`'s: start, then story, then ref; no known start last. The
index orders its members by start (seconds), then as bytes (`<story>/<ref>`), which is
not the order of (story, ref) at one instant: `desk-a/x` sorts before `desk/x`. So a
page never cuts the members of one score: from each region it reads the `limit + 1`
first after the mark, then every member at the last score it got, and keeps, of the
regions together, what lies at or before the lowest such score of a region cut short.
Everything there is known; past it, a region may hold members not read yet.

A reader who sees some stories only (`sees`) may find fewer than a page there: the read
goes on from the last member read, until the page is full or the index ends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from dateline.query.paging import Mark
from dateline.store.readmodels import ReadModels

Scored = tuple[bytes, float]


@dataclass(frozen=True)
class Bounds:
    """The board's range: starts at or after `low`, at or before `high` (epoch s). With
    either, items with no known start are out of it (as the whole board's range read)."""

    low: float | None = None
    high: float | None = None

    @property
    def ranged(self) -> bool:
        return self.low is not None or self.high is not None

    @property
    def top(self) -> str:
        if self.high is not None:
            return repr(self.high)
        return "(inf" if self.ranged else "inf"

    def holds(self, score: float) -> bool:
        if self.low is not None and score < self.low:
            return False
        if self.high is not None:
            return score <= self.high
        return not (self.ranged and score == math.inf)


def index_mark(member: bytes, score: float) -> Mark:
    """A member's place on the board from the index alone. Its microseconds are its
    score's: the same as its start's text gives for any start before 2106, while a
    float's seconds still tell microseconds apart."""
    story, _, ref = member.decode().partition("/")
    if score == math.inf:
        return Mark(True, 0, story, ref)
    return Mark(False, round(score * 1_000_000), story, ref)


def _score(mark: Mark) -> float:
    return math.inf if mark.undated else mark.at / 1_000_000


def settled(
    regions: list[list[Scored]], cut: list[float | None], after: Mark | None, bounds: Bounds
) -> tuple[list[tuple[Mark, bytes]], Mark | None]:
    """The members read, merged in the board's order, that are known to be all there
    is up to where they end; and that end, or None if the index holds nothing past them.
    `cut`: a region's last score, if its read was cut short there (else None)."""
    lowest = min((c for c in cut if c is not None), default=None)
    found: dict[bytes, Mark] = {}
    for members in regions:
        for member, score in members:
            if lowest is not None and score > lowest:
                continue
            if not bounds.holds(score):
                continue
            mark = index_mark(member, score)
            if after is None or mark > after:
                found[member] = mark
    ordered = sorted(((mark, member) for member, mark in found.items()), key=_first)
    return ordered, (ordered[-1][0] if lowest is not None and ordered else None)


def _first(pair: tuple[Mark, bytes]) -> Mark:
    return pair[0]


async def _candidates(
    views: aioredis.Redis, models: ReadModels, bounds: Bounds, after: Mark | None, n: int
) -> tuple[list[tuple[Mark, bytes]], Mark | None]:
    """`settled` over every region: up to `n` members a region past `after`, in two
    round trips at most (the second only for the regions cut short)."""
    keys = [region.schedule_by_start for region in models.regions]
    pipe = views.pipeline(transaction=False)
    if after is None:
        start = "-inf" if bounds.low is None else repr(bounds.low)
    else:
        at = _score(after)
        # Every member of the mark's instant, whatever its bytes: the mark's filter
        # keeps those after it.
        ties = (repr(math.nextafter(at, -math.inf)), repr(math.nextafter(at, math.inf)))
        beyond = math.nextafter(at, math.inf)
        start = f"({beyond!r}" if bounds.low is None or bounds.low <= beyond else repr(bounds.low)
    for key in keys:
        if after is not None:
            pipe.zrangebyscore(key, *ties, withscores=True)
        pipe.zrangebyscore(key, start, bounds.top, start=0, num=n, withscores=True)
    replies = cast(list[list[Scored]], await pipe.execute())
    step = 1 if after is None else 2
    regions = [
        [m for reply in replies[i : i + step] for m in reply] for i in range(0, len(replies), step)
    ]
    rests = replies[step - 1 :: step]
    cut = [rest[-1][1] if len(rest) >= n else None for rest in rests]
    shortened = [(i, score) for i, score in enumerate(cut) if score is not None]
    if shortened:
        pipe = views.pipeline(transaction=False)
        for i, score in shortened:
            pipe.zrangebyscore(keys[i], repr(score), repr(score), withscores=True)
        for (i, _), last in zip(shortened, await pipe.execute(), strict=True):
            regions[i] += cast(list[Scored], last)
    return settled(regions, cut, after, bounds)


async def read_page(
    views: aioredis.Redis,
    models: ReadModels,
    bounds: Bounds,
    limit: int,
    after: Mark | None,
    sees: Callable[[str], bool],
) -> tuple[list[bytes], Mark | None]:
    """The board's entries after `after`, `limit` at most, that the reader `sees`, and
    the mark of the last if more follow (the page's `next`)."""
    found: list[tuple[Mark, bytes]] = []
    mark = after
    while len(found) <= limit:
        got, end = await _candidates(views, models, bounds, mark, limit + 1)
        found += [(m, member) for m, member in got if sees(m.story)]
        if end is None:
            break
        mark = end
    page = found[:limit]
    return await _entries(views, models, [member for _, member in page]), (
        page[-1][0] if len(found) > limit else None
    )


async def _entries(views: aioredis.Redis, models: ReadModels, members: list[bytes]) -> list[bytes]:
    """The board's entries of these members, in their order, one round trip. A member
    whose entry went between the two reads (a commit took the item off) is left out."""
    at: dict[str, list[int]] = {}
    for i, member in enumerate(members):
        story = member.decode().partition("/")[0]
        at.setdefault(models.region_of(story).schedule, []).append(i)
    pipe = views.pipeline(transaction=False)
    for key, places in at.items():
        pipe.hmget(key, [members[i] for i in places])
    found: list[Any] = [None] * len(members)
    for places, entries in zip(at.values(), await pipe.execute(), strict=True):
        for i, entry in zip(places, entries, strict=True):
            found[i] = entry
    return [entry for entry in found if entry is not None]
