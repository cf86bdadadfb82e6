"""Across stories: what one person said (/v1/speakers), and the schedule board."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, TypeVar

import msgspec
from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, QueryParameter

from dateline.domain.overdue import is_overdue
from dateline.query import boardpage
from dateline.query.access import grant_of
from dateline.query.paging import BadMark, Mark, paged
from dateline.query.routes.common import SECURED, Reached, answer, documented, reader_of
from dateline.query.views import BoardEntry, BoardPage, SpokenPage
from dateline.store.readmodels import SpokenEntry
from dateline.web import params
from dateline.web.ready import Ready
from dateline_schemas import parse_fuzzy_date

_encode = msgspec.json.Encoder().encode
_spoken = msgspec.json.Decoder(SpokenEntry)
_board = msgspec.json.Decoder(BoardEntry)  # a stored ScheduleEntry, read as the API shows it


@functools.lru_cache(maxsize=1 << 16)
def _micros(text: str, fuzzy: bool) -> int:
    """An instant's text as `Mark`'s microseconds: starts and times repeat across a board
    (a day's items, one clock's statements), and parsing them was a third of a page of
    20,000."""
    at = parse_fuzzy_date(text).start if fuzzy else datetime.fromisoformat(text)
    return Mark.of(at, "", "").at


def _start_mark(entry: BoardEntry) -> Mark:
    at = entry.item.starts_at
    if at is None:
        return Mark(True, 0, entry.story, entry.item.item)
    return Mark(False, _micros(at.at, True), entry.story, entry.item.item)


def _said_mark(entry: SpokenEntry) -> Mark:
    # By instant: the texts carry their sources' offsets, and 10:00+07:00 is before
    # 05:00Z though it sorts after it as text.
    said = entry.statement
    return Mark(False, _micros(said.time, False), entry.story, said.statement)


Limit = Annotated[
    int | None,
    QueryParameter(ge=1, le=10_000, description="At most this many (default: every one)."),
]
After = Annotated[
    str | None,
    QueryParameter(
        description="The `next` of the page before: the entries after its last one.",
        schema_extra={"pattern": r"^(-|[0-9-]+)~[a-z0-9-]{1,128}~[A-Za-z0-9._:-]{1,128}$"},
    ),
]


def _after(after: str | None) -> Mark | None:
    try:
        return None if after is None else Mark.parse(after)
    except BadMark as exc:
        raise params.bad_parameter("after", str(exc)) from None


def _bound(value: str | None, name: str) -> float | None:
    when = params.instant(value, name)
    return None if when is None else when.timestamp()


class _Entry(Protocol):
    story: str


E = TypeVar("E", bound=_Entry)


async def _page(
    request: Request[Any, Any, Any],
    board: boardpage.Board,
    limit: int | None,
    mark: Mark | None,
    entry: tuple[Callable[[bytes], E], Callable[[E], Mark]],
    whole: Callable[[], Awaitable[list[bytes]]],
) -> tuple[list[E], str | None]:
    """A board's page after `mark`, that the reader sees, and its `next`: by the board's
    index; every entry, or a version built before that index, read `whole` and cut here.
    `entry`: how an entry is decoded, and its mark."""
    decode, marked = entry
    sees = grant_of(request).sees
    if limit is not None:
        indexed = await reader_of(request).board_page(board, limit, mark, sees)
        if indexed is not None:
            raw, last = indexed
            return [decode(b) for b in raw], None if last is None else str(last)
    entries = [decode(b) for b in await whole()]
    return paged([e for e in entries if sees(e.story)], marked, limit, mark)


def routes() -> list[HTTPRouteHandler]:
    @get(
        "/v1/speakers/{name:str}/statements",
        responses=documented(SpokenPage, 400, 409, 503),
        security=SECURED,
    )
    async def speaker(
        request: Request[Any, Any, Any],
        reached: Reached,
        name: FromPath[str],
        limit: Limit = None,
        after: After = None,
    ) -> Ready:
        """What one person said, across stories, in time order (names match
        case-insensitively); with `limit`, a page at a time (`next`, then `after`)."""
        reader = reader_of(request)
        said, more = await _page(
            request,
            boardpage.speaker(name),
            limit,
            _after(after),
            (_spoken.decode, _said_mark),
            lambda: reader.speaker(name),
        )
        models = await reader.models()
        return answer(request, _encode(SpokenPage(models.version, said, more)))

    @get("/v1/schedule", responses=documented(BoardPage, 400, 409, 503), security=SECURED)
    async def schedule(
        request: Request[Any, Any, Any],
        reached: Reached,
        start: Annotated[
            str | None,
            QueryParameter(
                name="from",
                description="Items starting at or after (RFC 3339).",
                schema_extra={"format": "date-time"},
            ),
        ] = None,
        end: Annotated[
            str | None,
            QueryParameter(
                name="to",
                description="Items starting at or before (RFC 3339).",
                schema_extra={"format": "date-time"},
            ),
        ] = None,
        limit: Limit = None,
        after: After = None,
    ) -> Ready:
        """The schedule board: items across stories by start; items with no known start
        last (when no range is given); with `limit`, a page at a time (`next`, then
        `after`)."""
        reader = reader_of(request)
        mark = _after(after)
        low, high = _bound(start, "from"), _bound(end, "to")
        if low is not None and high is not None and high < low:
            # An empty board would read as "nothing scheduled": the range is the mistake.
            raise params.bad_parameter("to", f"{end} is before from ({start})")
        board, more = await _page(
            request,
            boardpage.schedule(boardpage.Bounds(low, high)),
            limit,
            mark,
            (_board.decode, _start_mark),
            lambda: reader.schedule(low, high),
        )
        now = datetime.now(UTC)
        for entry in board:
            entry.item.overdue = is_overdue(entry.item, now)
        models = await reader.models()
        return answer(request, _encode(BoardPage(models.version, board, more)))

    return [speaker, schedule]
