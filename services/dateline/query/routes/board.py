"""Across stories: what one person said (/v1/speakers), and the schedule board."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, QueryParameter

from dateline.domain.overdue import is_overdue
from dateline.query.access import grant_of
from dateline.query.routes.common import SECURED, Reached, answer, documented, reader_of
from dateline.query.views import BoardEntry, BoardPage, SpokenPage
from dateline.store.readmodels import SpokenEntry
from dateline.web import params
from dateline.web.ready import Ready
from dateline_schemas import parse_fuzzy_date

_encode = msgspec.json.Encoder().encode
_spoken = msgspec.json.Decoder(SpokenEntry)
_board = msgspec.json.Decoder(BoardEntry)  # a stored ScheduleEntry, read as the API shows it


def _start_key(entry: BoardEntry) -> tuple[int, float, str]:
    at = entry.item.starts_at
    if at is None:
        return (1, 0.0, f"{entry.story}/{entry.item.item}")
    return (0, parse_fuzzy_date(at.at).start.timestamp(), f"{entry.story}/{entry.item.item}")


def _bound(value: str | None, name: str) -> float | None:
    when = params.instant(value, name)
    return None if when is None else when.timestamp()


def routes() -> list[HTTPRouteHandler]:
    @get(
        "/v1/speakers/{name:str}/statements",
        responses=documented(SpokenPage, 400, 409, 503),
        security=SECURED,
    )
    async def speaker(
        request: Request[Any, Any, Any], reached: Reached, name: FromPath[str]
    ) -> Ready:
        """What one person said, across stories, in time order (names match case-insensitively)."""
        reader = reader_of(request)
        sees = grant_of(request).sees
        said = [_spoken.decode(s) for s in await reader.speaker(name)]
        said = [s for s in said if sees(s.story)]
        # By instant: the texts carry their sources' offsets, and 10:00+07:00 is before
        # 05:00Z though it sorts after it as text.
        said.sort(
            key=lambda s: (
                datetime.fromisoformat(s.statement.time),
                s.story,
                s.statement.statement,
            )
        )
        models = await reader.models()
        return answer(request, _encode(SpokenPage(models.version, said)))

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
    ) -> Ready:
        """The schedule board: items across stories by start; items with no known start last."""
        reader = reader_of(request)
        low, high = _bound(start, "from"), _bound(end, "to")
        sees = grant_of(request).sees
        board = [_board.decode(b) for b in await reader.schedule(low, high)]
        board = [entry for entry in board if sees(entry.story)]
        board.sort(key=_start_key)
        now = datetime.now(UTC)
        for entry in board:
            entry.item.overdue = is_overdue(entry.item, now)
        models = await reader.models()
        return answer(request, _encode(BoardPage(models.version, board)))

    return [speaker, schedule]
