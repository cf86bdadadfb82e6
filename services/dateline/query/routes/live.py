"""Server-Sent Events: one story's updates, and the whole index's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import QueryParameter
from litestar.response import Stream

from dateline.domain.positions import Cursor, Position
from dateline.query.access import grant_of
from dateline.query.live import (
    LiveStreams,
    Push,
    index_events,
    quiet,
    story_events,
    through_outages,
    wire,
)
from dateline.query.routes.common import StoryPath, lens_of, reader_of, story_id
from dateline.web import params

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
LastEventId = Annotated[str | None, QueryParameter(name="last_event_id")]


def _sse(request: Request[Any, Any, Any], pages: AsyncIterator[list[Push]]) -> Stream:
    streams: LiveStreams = request.app.state.live_streams
    streams.check()
    # Not litestar's ServerSentEvent, which sends each event on its own (see `live.wire`).
    return Stream(wire(pages, streams), media_type="text/event-stream", headers=_SSE_HEADERS)


def routes() -> list[HTTPRouteHandler]:
    @get("/v1/stories/{story:str}/live", media_type="text/event-stream", include_in_schema=False)
    async def story_live(
        request: Request[Any, Any, Any],
        story: StoryPath,
        last_event_id: LastEventId = None,
        patches: Annotated[
            bool,
            QueryParameter(
                description="After the first `state`, `patch` events: what changed since "
                "the state sent last, as a JSON merge patch (RFC 7396)."
            ),
        ] = False,
    ) -> Stream:
        """SSE: `update` per update (id: its log position), then `state` (or `patch`)."""
        reader = reader_of(request)
        raw = request.headers.get("last-event-id") or last_event_id
        if raw:
            # A 400 now, not a broken stream.
            params.position(raw, "Last-Event-ID", reader.keys.partitions)
        sid = story_id(story)
        grant, lens = grant_of(request), lens_of(request)
        if not grant.sees(sid):  # as a story with no updates: keepalives, nothing else
            return _sse(request, quiet())

        def start(last: str | None) -> AsyncIterator[list[Push]]:
            after = Position.parse(last) if last else None
            shared = request.app.state.patches if patches else None
            return story_events(
                reader, sid, after, redacted=not grant.audits, lens=lens, patches=shared
            )

        return _sse(request, through_outages(start, raw, reader.reachable))

    @get("/v1/live", media_type="text/event-stream", include_in_schema=False)
    async def index_live(
        request: Request[Any, Any, Any],
        last_event_id: LastEventId = None,
        limit: Annotated[int | None, QueryParameter(ge=1, le=10_000)] = None,
    ) -> Stream:
        """SSE: `index` on connect (every story, or the `limit` updated last), then
        `update` per update (id: a cursor)."""
        reader = reader_of(request)
        raw = request.headers.get("last-event-id") or last_event_id
        partitions = reader.keys.partitions
        if raw:
            params.cursor(raw, "Last-Event-ID", partitions)  # a 400 now, not a broken stream

        lens, audits = lens_of(request), grant_of(request).audits

        def start(last: str | None) -> AsyncIterator[list[Push]]:
            cursor = Cursor.parse(last, partitions) if last else None
            return index_events(reader, cursor, limit, lens, redacted=not audits)

        return _sse(request, through_outages(start, raw, reader.reachable))

    return [story_live, index_live]
