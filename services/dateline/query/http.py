"""The query service: read models over HTTP, live pushes, the dashboard.

Every read answers with an ETag (a hash of the body) and honours If-None-Match.
`min_position` (the position ingest returned) makes a read wait until the projection
has applied it: read-your-writes, with `wait` seconds at most, then 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import msgspec
import structlog
from litestar import Litestar, Request, Response, get
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, PathParameter, QueryParameter
from litestar.response import Stream
from litestar.static_files import create_static_files_router

from dateline.config import Settings
from dateline.connection import connect
from dateline.heap import tune_collector
from dateline.http_errors import unhandled
from dateline.http_probes import probe_routes
from dateline.keys import Keys
from dateline.metrics import record_status, timed
from dateline.positions import BadPosition, Cursor, Position
from dateline.projection.state import Entry
from dateline.projector.ops import status as ops_status
from dateline.projector.readmodels import ScheduleEntry, SpokenEntry
from dateline.query.exports import jsonld, timelinejs
from dateline.query.live import Doorbell, Push, index_events, story_events, wire
from dateline.query.reads import NotReached, Parked, Reader, Unfoldable
from dateline.query.views import (
    BoardPage,
    SpokenPage,
    StoryPage,
    StoryView,
    TimelinePage,
    stored_view,
    view_of,
)
from dateline_schemas import STORY_ID_PATTERN, RuleError, check_story_id, parse_fuzzy_date

log = structlog.get_logger("dateline.query")

STATIC = Path(__file__).parent / "static"
PROBLEM = "application/problem+json"
_encode = msgspec.json.Encoder().encode
_entry = msgspec.json.Decoder(Entry)
_spoken = msgspec.json.Decoder(SpokenEntry)
_board = msgspec.json.Decoder(ScheduleEntry)

MinPosition = Annotated[
    str | None,
    QueryParameter(
        description="Wait until the projection has applied this log position "
        "(`<partition>:<stream id>`, as ingest returned it); 503 if it has not within `wait`.",
        schema_extra={"pattern": r"^\d{1,4}:\d{1,20}-\d{1,20}$"},
    ),
]
Wait = Annotated[
    float, QueryParameter(ge=0, le=30, description="Seconds to wait for `min_position`.")
]
AsOf = Annotated[
    str | None,
    QueryParameter(
        description="What the desk knew at this recorded time (RFC 3339 with offset).",
        schema_extra={"format": "date-time"},
    ),
]
StoryPath = Annotated[
    str,
    PathParameter(
        description="Story id: lowercase letters, digits and '-', 1 to 128 characters.",
        schema_extra={"pattern": STORY_ID_PATTERN, "maxLength": 128},
    ),
]
AtVersion = Annotated[
    int | None,
    QueryParameter(ge=1, le=2**63 - 1, description="What the desk knew after this many updates."),
]


class Problem(msgspec.Struct, frozen=True):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str


_WHY = {
    304: "The client's copy (If-None-Match) is current.",
    400: "A parameter is malformed; the detail names it.",
    404: "No such story.",
    409: "The update at `min_position` is parked: the projector could not apply it, and the"
    " read models will not show it until ops redrive it (the detail says how).",
    503: "The projection has not reached `min_position` within `wait` seconds.",
}


def _responses(
    ok: Any, *errors: int, media_type: str = "application/json"
) -> dict[int, ResponseSpec]:
    """The documented answers of a read: `ok` on 200, problems on the `errors`."""
    specs = {
        200: ResponseSpec(ok, media_type=media_type, generate_examples=False),
        304: ResponseSpec(None, description=_WHY[304]),
    }
    for code in errors:
        specs[code] = ResponseSpec(
            Problem, media_type=PROBLEM, description=_WHY[code], generate_examples=False
        )
    return specs


class Refused(Exception):
    def __init__(self, status: int, kind: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = Problem(f"urn:dateline:problem:{kind}", title, status, detail)


def _problem(p: Problem, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(_encode(p), status_code=p.status, media_type=PROBLEM, headers=headers)


def answer(
    request: Request[Any, Any, Any], body: bytes, media_type: str = "application/json"
) -> Response[bytes]:
    """JSON with an ETag; 304 when the client already has these bytes."""
    tag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    seen = request.headers.get("if-none-match", "")
    if seen.strip() == "*" or tag in (t.strip().removeprefix("W/") for t in seen.split(",")):
        return Response(b"", status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def story_id(value: str) -> str:
    try:
        check_story_id(value)
    except RuleError as exc:
        raise Refused(400, "bad-story-id", "Bad story id", f"story id: {exc}") from None
    return value


def parse_as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise Refused(
            400,
            "bad-parameter",
            "Bad parameter",
            f"as_of: expected an RFC 3339 date-time with offset "
            f"(such as 2019-02-28T14:00:00+07:00), got {value!r}",
        )
    return parsed


def then(as_of: str | None, at_version: int | None) -> datetime | None:
    """The as-of time, once it is clear the request asks for one moment, not two."""
    if as_of is not None and at_version is not None:
        raise Refused(400, "bad-parameter", "Bad parameter", "give as_of or at_version, not both")
    return parse_as_of(as_of)


def parse_position(value: str, name: str) -> Position:
    try:
        return Position.parse(value)
    except BadPosition as exc:
        raise Refused(400, "bad-parameter", "Bad parameter", f"{name}: {exc}") from None


@dataclass
class _Services:
    """Built at startup, so importing or creating the app connects to nothing."""

    reader_: Reader | None = None
    bell_task: asyncio.Task[None] | None = None

    @property
    def reader(self) -> Reader:
        if self.reader_ is None:
            raise RuntimeError("the query app was used before its startup hook ran")
        return self.reader_


def create_app(settings: Settings, url: str, *, poll_s: float = 1.0) -> Litestar:  # noqa: PLR0915 - the routes share one context
    """The query service. Clients are made at startup, not at import."""
    ctx = _Services()
    keys = Keys(settings.prefix, settings.partitions)

    async def startup() -> None:
        client = connect(url)
        bell = Doorbell(client, settings.prefix, poll_s)
        ctx.reader_ = Reader(client, keys, bell)
        ctx.bell_task = asyncio.create_task(bell.run(), name="doorbell")
        tune_collector()

    async def shutdown() -> None:
        if ctx.bell_task is not None:
            ctx.bell_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ctx.bell_task
        if ctx.reader_ is not None:
            await ctx.reader_.client.aclose()

    async def reached(min_position: str | None, wait: float) -> None:
        if min_position is not None:
            await ctx.reader.wait_for(parse_position(min_position, "min_position"), wait)

    async def state_of(story: str, as_of: str | None, at_version: int | None) -> StoryView:
        when = then(as_of, at_version)
        if when is None and at_version is None:
            _, raw, parked = await ctx.reader.story(story)
            if raw is None:
                raise Refused(404, "not-found", "No such story", f"story {story!r} has no updates")
            return stored_view(raw, parked)
        state = await ctx.reader.folded(story, as_of=when, at_version=at_version)
        if state is None:
            raise Refused(
                404, "not-found", "No such story", f"story {story!r} had no updates by then"
            )
        return view_of(state)

    @get(
        "/v1/stories",
        responses=_responses(StoryPage, 400, 409, 503),
    )
    async def stories(
        request: Request[Any, Any, Any],
        status: Annotated[
            Literal["developing", "concluded"] | None, QueryParameter(description="Only these.")
        ] = None,
        limit: Annotated[
            int, QueryParameter(ge=1, le=10_000, description="At most this many, newest first.")
        ] = 100,
        min_position: MinPosition = None,
        wait: Wait = 5.0,
    ) -> Response[bytes]:
        """The stories, newest update first (`limit`, default 100)."""
        await reached(min_position, wait)
        entries, _ = await ctx.reader.listed(limit, status)
        models = await ctx.reader.models()
        return answer(request, _encode(StoryPage(models.version, entries)))

    @get(
        "/v1/stories/{story:str}",
        responses=_responses(StoryView, 400, 404, 409, 503),
    )
    async def story(
        request: Request[Any, Any, Any],
        story: StoryPath,
        as_of: AsOf = None,
        at_version: AtVersion = None,
        min_position: MinPosition = None,
        wait: Wait = 5.0,
    ) -> Response[bytes]:
        """One story's state: now, or as the desk knew it at a time or version."""
        await reached(min_position, wait)
        view = await state_of(story_id(story), as_of, at_version)
        return answer(request, _encode(view))

    @get(
        "/v1/stories/{story:str}/timeline",
        responses=_responses(TimelinePage, 400, 404, 409, 503),
    )
    async def timeline(
        request: Request[Any, Any, Any],
        story: StoryPath,
        as_of: AsOf = None,
        at_version: AtVersion = None,
        min_position: MinPosition = None,
        wait: Wait = 5.0,
    ) -> Response[bytes]:
        """Every visible update of the story, in (time, precision, version) order."""
        await reached(min_position, wait)
        story_id(story)
        models = await ctx.reader.models()
        if as_of is None and at_version is None:
            entries = [_entry.decode(e) for e in await ctx.reader.timeline(story)]
        else:
            when = then(as_of, at_version)
            state = await ctx.reader.folded(story, as_of=when, at_version=at_version)
            entries = state.timeline if state else []
        if not entries and await ctx.reader.log.version(story) == 0:
            raise Refused(404, "not-found", "No such story", f"story {story!r} has no updates")
        return answer(request, _encode(TimelinePage(models.version, entries)))

    @get(
        "/v1/stories/{story:str}/history",
        responses=_responses(list[dict[str, Any]], 400, 404),
    )
    async def history(
        request: Request[Any, Any, Any],
        story: StoryPath,
        as_of: AsOf = None,
        at_version: AtVersion = None,
    ) -> Response[bytes]:
        """The story's updates as the log holds them, version 1 first (the audit trail)."""
        records = await ctx.reader.history(
            story_id(story), as_of=parse_as_of(as_of), at_version=at_version
        )
        if not records and await ctx.reader.log.version(story) == 0:
            raise Refused(404, "not-found", "No such story", f"story {story!r} has no updates")
        return answer(request, b"[" + b",".join(records) + b"]")

    @get(
        "/v1/stories/{story:str}/jsonld",
        responses=_responses(dict[str, Any], 400, 404, media_type="application/ld+json"),
    )
    async def story_jsonld(request: Request[Any, Any, Any], story: StoryPath) -> Response[bytes]:
        """schema.org JSON-LD: an Event, with Quotations and CorrectionComments."""
        view = await state_of(story_id(story), None, None)
        base = str(request.base_url).rstrip("/")
        return answer(request, _encode(jsonld(view, base)), "application/ld+json")

    @get(
        "/v1/stories/{story:str}/timelinejs",
        responses=_responses(dict[str, Any], 400, 404),
    )
    async def story_timelinejs(
        request: Request[Any, Any, Any], story: StoryPath
    ) -> Response[bytes]:
        """The timeline as TimelineJS 3 JSON."""
        view = await state_of(story_id(story), None, None)
        entries = [_entry.decode(e) for e in await ctx.reader.timeline(story)]
        return answer(request, _encode(timelinejs(view, entries)))

    @get(
        "/v1/speakers/{name:str}/statements",
        responses=_responses(SpokenPage, 400, 409, 503),
    )
    async def speaker(
        request: Request[Any, Any, Any],
        name: FromPath[str],
        min_position: MinPosition = None,
        wait: Wait = 5.0,
    ) -> Response[bytes]:
        """What one person said, across stories, in time order (names match case-insensitively)."""
        await reached(min_position, wait)
        said = [_spoken.decode(s) for s in await ctx.reader.speaker(name)]
        said.sort(key=lambda s: (s.statement.time, s.story, s.statement.statement))
        models = await ctx.reader.models()
        return answer(request, _encode(SpokenPage(models.version, said)))

    @get(
        "/v1/schedule",
        responses=_responses(BoardPage, 400, 409, 503),
    )
    async def schedule(
        request: Request[Any, Any, Any],
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
        min_position: MinPosition = None,
        wait: Wait = 5.0,
    ) -> Response[bytes]:
        """The schedule board: items across stories by start; items with no known start last."""
        await reached(min_position, wait)
        low, high = (parse_bound(v, n) for v, n in ((start, "from"), (end, "to")))
        board = [_board.decode(b) for b in await ctx.reader.schedule(low, high)]
        board.sort(key=_start_key)
        models = await ctx.reader.models()
        return answer(request, _encode(BoardPage(models.version, board)))

    @get("/v1/stories/{story:str}/live", media_type="text/event-stream", include_in_schema=False)
    async def story_live(
        request: Request[Any, Any, Any],
        story: StoryPath,
        last_event_id: Annotated[str | None, QueryParameter(name="last_event_id")] = None,
    ) -> Stream:
        """SSE: `update` per update (id: its log position), then `state`."""
        raw = request.headers.get("last-event-id") or last_event_id
        after = parse_position(raw, "Last-Event-ID") if raw else None
        return _sse(story_events(ctx.reader, story_id(story), after))

    @get("/v1/live", media_type="text/event-stream", include_in_schema=False)
    async def index_live(
        request: Request[Any, Any, Any],
        last_event_id: Annotated[str | None, QueryParameter(name="last_event_id")] = None,
        limit: Annotated[int | None, QueryParameter(ge=1, le=10_000)] = None,
    ) -> Stream:
        """SSE: `index` on connect (every story, or the `limit` updated last), then
        `update` per update (id: a cursor)."""
        raw = request.headers.get("last-event-id") or last_event_id
        try:
            cursor = Cursor.parse(raw, keys.partitions) if raw else None
        except BadPosition as exc:
            raise Refused(400, "bad-parameter", "Bad parameter", f"Last-Event-ID: {exc}") from None
        return _sse(index_events(ctx.reader, cursor, limit))

    @get("/v1/status", responses=_responses(dict[str, Any]))
    async def status(request: Request[Any, Any, Any]) -> Response[bytes]:
        """Operations: per partition lag, pending and leases; parked updates; versions."""
        models = await ctx.reader.models()
        doc = await ops_status(ctx.reader.client, keys, models, models.group)
        raw = cast(
            dict[bytes, bytes], await ctx.reader.client.hgetall(f"{settings.prefix}:rm:replay")
        )
        doc["replay"] = {k.decode(): v.decode() for k, v in raw.items()} or None
        return answer(request, _encode(doc))

    async def scrape() -> None:
        """The projection's lag and parked updates, as they are now."""
        models = await ctx.reader.models()
        record_status(await ops_status(ctx.reader.client, keys, models, models.group))

    @get("/v1/openapi.json", include_in_schema=False)
    async def openapi(request: Request[Any, Any, Any]) -> Response[bytes]:
        """The OpenAPI document, generated from the msgspec Structs the routes return."""
        return Response(
            _encode(request.app.openapi_schema.to_schema()), media_type="application/json"
        )

    def refused(request: Request[Any, Any, Any], exc: Refused) -> Response[bytes]:
        return _problem(exc.problem)

    def parked(request: Request[Any, Any, Any], exc: Parked) -> Response[bytes]:
        return _problem(Problem("urn:dateline:problem:parked", "Update parked", 409, str(exc)))

    def unfoldable(request: Request[Any, Any, Any], exc: Unfoldable) -> Response[bytes]:
        log.error(
            "story cannot be folded",
            story=exc.story,
            path=request.url.path,
            error=repr(exc.error),
            exc_info=exc.error,
        )
        body = Problem("urn:dateline:problem:unfoldable", "Story cannot be folded", 500, str(exc))
        return _problem(body)

    def not_reached(request: Request[Any, Any, Any], exc: NotReached) -> Response[bytes]:
        body = Problem("urn:dateline:problem:not-reached", "Not there yet", 503, str(exc))
        return _problem(body, {"Retry-After": "1"})

    def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
        kind = {400: "bad-request", 404: "not-found", 405: "method-not-allowed"}.get(
            exc.status_code, "http-error"
        )
        detail = str(exc.detail)
        extra = getattr(exc, "extra", None)
        if extra:
            detail += ": " + "; ".join(
                f"{e.get('key', '?')}: {e.get('message', '')}" if isinstance(e, dict) else str(e)
                for e in extra
            )
        body = Problem(f"urn:dateline:problem:{kind}", str(exc.detail), exc.status_code, detail)
        return _problem(body, dict(exc.headers or {}))

    return Litestar(
        route_handlers=[
            stories,
            story,
            timeline,
            history,
            story_jsonld,
            story_timelinejs,
            speaker,
            schedule,
            story_live,
            index_live,
            status,
            openapi,
            *probe_routes(lambda: ctx.reader.client, scrape),
            create_static_files_router("/", [STATIC], html_mode=True, name="dashboard"),
        ],
        openapi_config=OpenAPIConfig(
            title="dateline query API",
            version="1",
            path="/v1/docs",
            description="Read models of developing news stories, live pushes, exports.",
        ),
        middleware=[timed("query")],
        on_startup=[startup],
        on_shutdown=[shutdown],
        exception_handlers={
            Refused: refused,
            NotReached: not_reached,
            Parked: parked,
            Unfoldable: unfoldable,
            HTTPException: http_error,
            Exception: unhandled("query"),
        },
        debug=False,
    )


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _sse(pages: AsyncIterator[list[Push]]) -> Stream:
    # Not litestar's ServerSentEvent, which sends each event on its own (see `live.wire`).
    return Stream(wire(pages), media_type="text/event-stream", headers=_SSE_HEADERS)


def parse_bound(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    when = None
    with contextlib.suppress(ValueError):
        when = datetime.fromisoformat(value)
    if when is None or when.tzinfo is None:
        raise Refused(
            400,
            "bad-parameter",
            "Bad parameter",
            f"{name}: expected an RFC 3339 date-time with offset, got {value!r}",
        )
    return when.timestamp()


def _start_key(entry: ScheduleEntry) -> tuple[int, float, str]:
    at = entry.item.starts_at
    if at is None:
        return (1, 0.0, f"{entry.story}/{entry.item.item}")
    return (0, parse_fuzzy_date(at.at).start.timestamp(), f"{entry.story}/{entry.item.item}")
