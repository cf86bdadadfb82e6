"""A page of a board read by its index by time, not whole: the schedule board's
(`schedule:by_start`), a speaker's statements' (`speaker-at:<name>`).

A board's order is `Mark`'s: instant, then story, then ref; no known start last. An
index orders its members by instant (seconds), then as bytes (`<story>/<ref>`), which is
not the order of (story, ref) at one instant: `desk-a/x` sorts before `desk/x`. So a
page never cuts the members of one score: from each region it reads the first few
after the mark (twice its share of a page), then every member at the last score it
got, and keeps, of the regions together, what lies at or before the lowest such score
of a region cut short. Everything there is known; past it, a region may hold members
not read yet.

Where that is less than a page (the page's stories crowd one partition, or the reader
sees some stories only, `sees`), the read goes on from the last member kept, until the
page is full or the index ends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.typing import EncodableT

from dateline.query.paging import Mark
from dateline.store.connection import sent
from dateline.store.layout import Region
from dateline.store.readmodels import ReadModels
from dateline.store.replies import scored

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


@dataclass(frozen=True)
class Board:
    """A board's keys in a region: its index by time, and its entries by member."""

    index: Callable[[Region], str]
    entries: Callable[[Region], str]
    bounds: Bounds = Bounds()


def schedule(bounds: Bounds) -> Board:
    """The schedule board, within `bounds`."""
    return Board(lambda r: r.schedule_by_start, lambda r: r.schedule, bounds)


def speaker(name: str) -> Board:
    """What one person said, across stories."""
    return Board(lambda r: r.speaker_by_time(name), lambda r: r.speaker(name))


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
    lowest = min((c for c in cut if c is not None), default=math.inf)
    found: dict[bytes, Mark] = {}
    for members in regions:
        for member, score in members:
            # Past `lowest` a region may hold what was not read: marked only if kept.
            if score <= lowest and bounds.holds(score):
                mark = index_mark(member, score)
                if after is None or mark > after:
                    found[member] = mark
    ordered = sorted(((mark, member) for member, mark in found.items()), key=_first)
    cut_short = any(c is not None for c in cut)
    return ordered, (ordered[-1][0] if cut_short and ordered else None)


def _first(pair: tuple[Mark, bytes]) -> Mark:
    return pair[0]


async def _candidates(
    views: aioredis.Redis, keys: list[str], bounds: Bounds, after: Mark | None, n: int
) -> tuple[list[tuple[Mark, bytes]], Mark | None]:
    """`settled` over every region: up to `n` members a region past `after`, in two
    round trips at most (the second only for the regions cut short)."""
    reads: list[tuple[EncodableT, ...]] = []
    if after is None:
        start = "-inf" if bounds.low is None else repr(bounds.low)
    else:
        at = _score(after)
        # Every member of the mark's instant, whatever its bytes: the mark's filter
        # keeps those after it.
        low, beyond = math.nextafter(at, -math.inf), math.nextafter(at, math.inf)
        reads += [("ZRANGEBYSCORE", key, repr(low), repr(beyond), "WITHSCORES") for key in keys]
        start = f"({beyond!r}" if bounds.low is None or bounds.low <= beyond else repr(bounds.low)
    reads += [
        ("ZRANGEBYSCORE", key, start, bounds.top, "WITHSCORES", "LIMIT", 0, n) for key in keys
    ]
    replies = [scored(reply) for reply in await sent(views, reads)]
    rests = replies[-len(keys) :]
    regions = [list(rest) for rest in rests]
    for i, ties in enumerate(replies[: -len(keys)]):
        regions[i] += ties
    cut = [rest[-1][1] if len(rest) >= n else None for rest in rests]
    shortened = [(i, score) for i, score in enumerate(cut) if score is not None]
    if shortened:
        ties_at = [("ZRANGEBYSCORE", keys[i], repr(s), repr(s), "WITHSCORES") for i, s in shortened]
        for (i, _), last in zip(shortened, await sent(views, ties_at), strict=True):
            regions[i] += scored(last)
    return settled(regions, cut, after, bounds)


async def read_page(
    views: aioredis.Redis,
    models: ReadModels,
    board: Board,
    limit: int,
    after: Mark | None,
    sees: Callable[[str], bool],
) -> tuple[list[bytes], Mark | None]:
    """The board's entries after `after`, `limit` at most, that the reader `sees`, and
    the mark of the last if more follow (the page's `next`)."""
    keys, bounds = [board.index(region) for region in models.regions], board.bounds
    found: list[tuple[Mark, bytes]] = []
    mark = after
    # Twice a region's share of the page: what is settled is what every region read
    # reaches, and the partitions' stories spread over time alike; a region that holds
    # more of the page than that is read on from where the first read settled.
    n = min(limit + 1, 2 * math.ceil((limit + 1) / len(models.regions)) + 8)
    while len(found) <= limit:
        got, end = await _candidates(views, keys, bounds, mark, n)
        found += [(m, member) for m, member in got if sees(m.story)]
        if end is None:
            break
        mark = end
    page = found[:limit]
    return await _entries(views, models, board, [member for _, member in page]), (
        page[-1][0] if len(found) > limit else None
    )


async def _entries(
    views: aioredis.Redis, models: ReadModels, board: Board, members: list[bytes]
) -> list[bytes]:
    """The board's entries of these members, in their order, one round trip. A member
    whose entry went between the two reads (a commit took the item off) is left out."""
    if not members:
        return []
    at: dict[str, list[int]] = {}
    for i, member in enumerate(members):
        story = member.decode().partition("/")[0]
        at.setdefault(board.entries(models.region_of(story)), []).append(i)
    reads: list[tuple[EncodableT, ...]] = [
        ("HMGET", key, *[members[i] for i in places]) for key, places in at.items()
    ]
    found: list[Any] = [None] * len(members)
    for places, entries in zip(at.values(), await sent(views, reads), strict=True):
        for i, entry in zip(places, entries, strict=True):
            found[i] = entry
    return [entry for entry in found if entry is not None]
