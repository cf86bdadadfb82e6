"""Where a page of a list ends, and the next one starts: the story list (`Place`), and
the boards across stories, the schedule and a speaker's statements (`Mark`).

The list is ordered as the by-time indexes order it: by score (`recorded_score`, the
story's `recordedtime` in seconds), then by story id, both from the highest. A page
ends at its last story; the next page holds the stories strictly after it in that
order. So a page never repeats a story of the pages before it, and no story is
skipped that was not updated meanwhile: a story updated after its page was read moves
to the top of the list, where a dashboard following `/v1/live` already sees it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, TypeVar

from dateline.store.readmodels import recorded_score
from dateline_schemas import RuleError, check_ref, check_story_id

T = TypeVar("T")


class BadPlace(ValueError):
    pass


@dataclass(frozen=True, order=True)
class Place:
    """A story's place in the list: larger is newer."""

    score: float
    story: str

    @classmethod
    def of(cls, story: str, recordedtime: str | None) -> Place:
        return cls(recorded_score(recordedtime), story)

    @classmethod
    def parse(cls, text: str) -> Place:
        """The `next` a page gave (`<score>:<story id>`)."""
        score, colon, story = text.partition(":")
        try:
            value = float(score)
            check_story_id(story)
        except (ValueError, RuleError):
            value = math.nan
        if not colon or not math.isfinite(value):
            raise BadPlace(f"expected the `next` of a page of this list, got {text!r}")
        return cls(value, story)

    def __str__(self) -> str:
        return f"{self.score!r}:{self.story}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS = re.compile(r"-?[0-9]{1,19}")
_US = timedelta(microseconds=1)


class BadMark(ValueError):
    pass


class Mark(NamedTuple):
    """An entry's place on a board, oldest first: its instant (an item's start, a
    statement's time), in microseconds, exact where a float's seconds are not; then its
    story and its ref. An item with no known start (`at` None) comes after every one
    that has one. A board's page ends at its last entry; the next page holds the
    entries strictly after it, so an entry that moved (an item rescheduled) while a
    client paged is listed where it now falls, once, or, moved behind the client, not
    at all: a board is not a snapshot. A tuple, so that a board of 20,000 is sorted by
    C's comparisons: as a dataclass, its sort took 4 times its decoding."""

    undated: bool
    at: int
    story: str
    ref: str

    @classmethod
    def of(cls, at: datetime | None, story: str, ref: str) -> Mark:
        return cls(at is None, 0 if at is None else (at - _EPOCH) // _US, story, ref)

    @classmethod
    def parse(cls, text: str) -> Mark:
        """The `next` a page gave (`<microseconds or ->~<story id>~<ref>`)."""
        at, _, rest = text.partition("~")
        story, tilde, ref = rest.partition("~")
        try:
            check_story_id(story)
            check_ref(ref)
            if not tilde or not (at == "-" or _MICROS.fullmatch(at)):
                raise RuleError("no ref, or no instant")
            return cls(True, 0, story, ref) if at == "-" else cls(False, int(at), story, ref)
        except (ValueError, RuleError):
            raise BadMark(f"expected the `next` of a page of this board, got {text!r}") from None

    def __str__(self) -> str:
        return f"{'-' if self.undated else self.at}~{self.story}~{self.ref}"


def paged(
    entries: list[T], mark: Callable[[T], Mark], limit: int | None, after: Mark | None
) -> tuple[list[T], str | None]:
    """The board's entries after `after` in order, `limit` of them at most, and the
    `next` of the page (None on the last). The board is read whole and cut here: this
    bounds what a client is sent, not what the query process reads."""
    if limit is None and after is None:  # the whole board, as before paging: no pairs
        return sorted(entries, key=mark), None
    marked = sorted(((mark(e), e) for e in entries), key=_first)
    if after is not None:
        marked = [pair for pair in marked if pair[0] > after]
    if limit is None or len(marked) <= limit:
        return [e for _, e in marked], None
    page = marked[:limit]
    return [e for _, e in page], str(page[-1][0])


def _first(pair: tuple[Mark, object]) -> Mark:
    return pair[0]
