"""/v1/stories: the list, one story now or as of then, its timeline, history and exports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import QueryParameter

from dateline.domain.state import Entry
from dateline.query.access import grant_of
from dateline.query.exports import jsonld, timelinejs
from dateline.query.paging import BadPlace, Place
from dateline.query.reader import Reader
from dateline.query.rendering import rendered_now
from dateline.query.routes.common import (
    SECURED,
    AsOf,
    AtVersion,
    Reached,
    StoryPath,
    answer,
    documented,
    lens_of,
    no_story,
    reader_of,
    seen_story,
    story_id,
)
from dateline.query.scope import Lens
from dateline.query.views import (
    StoryPage,
    StoryView,
    TimelinePage,
    etag,
    redact,
    stored_view,
    view_of,
)
from dateline.store.readers import Grant
from dateline.store.together import side_by_side
from dateline.web import params
from dateline.web.problems import Refused
from dateline.web.ready import Ready
from dateline_schemas.correction import CorrectionIssued

_encode = msgspec.json.Encoder().encode
_entry = msgspec.json.Decoder(Entry)
CORRECTION = CorrectionIssued.__struct_config__.tag


def then(as_of: str | None, at_version: int | None) -> datetime | None:
    """The as-of time, once it is clear the request asks for one moment, not two."""
    if as_of is not None and at_version is not None:
        raise Refused(400, "bad-parameter", "Bad parameter", "give as_of or at_version, not both")
    return params.instant(as_of, "as_of")


async def state_of(
    reader: Reader, grant: Grant, story: str, as_of: str | None, at_version: int | None
) -> StoryView:
    """The story now (its read model), or folded from its history as of then; a story
    the reader may not see answers as one with no updates."""
    when, lens = then(as_of, at_version), Lens.of(grant)
    if when is None and at_version is None:
        _, raw, parked = await reader.story(story) if lens.sees(story) else (None, None, None)
        if raw is None:
            raise no_story(story)
        return lens.view(stored_view(raw, parked, datetime.now(UTC)))
    state = None
    if lens.sees(story):
        gone = None if grant.audits else await reader.recalled(story)
        state = await reader.folded(story, as_of=when, at_version=at_version, gone=gone)
    if state is None:
        raise no_story(story, "had no updates by then")
    return lens.view(view_of(state, when or datetime.now(UTC)))  # overdue by then, or now


async def _listing(
    request: Request[Any, Any, Any],
    limit: int,
    status: str | None,
    *,
    overdue: bool,
    after: str | None = None,
) -> tuple[bytes, str]:
    """The list, rendered once for every reader who sees it alike, until a commit to any
    partition is heard or a story in it falls overdue (`StoryCache.listing`)."""
    reader, grant = reader_of(request), grant_of(request)
    place = None if after is None else _place(after)
    models = await reader.models()
    key = (models.version, limit, status, overdue, tuple(grant.story_prefixes), after)
    if (kept := reader.cache.listing(key)) is not None:
        return kept
    generation, now = reader.cache.listings_generation, datetime.now(UTC)
    (entries, _), until = await side_by_side(
        # One more than the page: whether there is a next page, without a read to learn it.
        reader.listed(
            limit + 1,
            status,
            overdue_only=overdue,
            now=now,
            prefixes=grant.story_prefixes,
            after=place,
        ),
        reader.next_due(now),
    )
    last = entries[limit - 1] if len(entries) > limit else None
    following = None if last is None else str(Place.of(last.id, last.recordedtime))
    body = _encode(StoryPage(models.version, entries[:limit], following))
    tag = etag(body)
    reader.cache.put_listing(key, generation, body, tag, until)
    return body, tag


def _place(after: str) -> Place:
    try:
        return Place.parse(after)
    except BadPlace as exc:
        raise params.bad_parameter("after", str(exc)) from None


STORY_ROUTE = "/v1/stories/{story:str}"
"""One story's state; `query/front.py` answers the reads of it the process holds."""


async def _story(
    request: Request[Any, Any, Any], story: str, as_of: str | None, at_version: int | None
) -> Ready:
    reader = reader_of(request)
    if as_of is None and at_version is None:
        body, tag = await _now(reader, lens_of(request), story)
        return answer(request, body, tag=tag)
    view = await state_of(reader, grant_of(request), story, as_of, at_version)
    return answer(request, _encode(view))


async def _now(reader: Reader, lens: Lens, story: str) -> tuple[bytes, str]:
    """The story now, as this reader sees it, and its ETag: rendered once for every
    reader who sees it alike, until its read is dropped (a commit) or an item of it
    falls overdue."""
    if not lens.sees(story):
        raise no_story(story)
    _, kept = await reader.story_kept(story)
    if kept.raw is None:
        raise no_story(story)
    return rendered_now(kept, lens)


async def _timeline_now(reader: Reader, grant: Grant, story: str) -> list[Entry]:
    """The story's timeline as its read model holds it; to a reader without the audit
    right, without the lines of corrections of recalled updates (their notes)."""
    entries = [_entry.decode(e) for e in await reader.timeline(story)]
    if grant.audits or not any(e.type == CORRECTION for e in entries):
        return entries
    _, kept = await reader.story_kept(story)  # kept, mostly: no round trip
    if kept.raw is None or b'"canceled"' not in kept.raw:
        return entries  # nothing recalled: the history need not be read
    gone = await reader.recalled(story)
    return [e for e in entries if (e.source, e.id) not in gone]


def routes() -> list[HTTPRouteHandler]:
    @get("/v1/stories", responses=documented(StoryPage, 400, 409, 503), security=SECURED)
    async def stories(
        request: Request[Any, Any, Any],
        reached: Reached,
        status: Annotated[
            Literal["developing", "concluded"] | None, QueryParameter(description="Only these.")
        ] = None,
        limit: Annotated[
            int, QueryParameter(ge=1, le=10_000, description="At most this many, newest first.")
        ] = 100,
        overdue: Annotated[
            bool,
            QueryParameter(
                description="Only the stories with an item overdue now: still scheduled, "
                "its start passed, nothing reported of it."
            ),
        ] = False,
        after: Annotated[
            str | None,
            QueryParameter(
                description="The `next` of the page before: the stories after its last one "
                "(newest first, so updated before it, or at the same time with a smaller id).",
                schema_extra={"pattern": r"^[0-9.e+-]+:[a-z0-9-]{1,128}$"},
            ),
        ] = None,
    ) -> Ready:
        """The stories, newest update first (`limit`, default 100); `next` is the `after`
        of the next page, null on the last. A story updated while you page moves to the
        top: it is not listed again further on."""
        body, tag = await _listing(request, limit, status, overdue=overdue, after=after)
        return answer(request, body, tag=tag)

    @get(
        STORY_ROUTE,
        responses=documented(StoryView, 400, 404, 409, 503),
        security=SECURED,
    )
    async def story(
        request: Request[Any, Any, Any],
        reached: Reached,
        story: StoryPath,
        as_of: AsOf = None,
        at_version: AtVersion = None,
    ) -> Ready:
        """One story's state: now, or as the desk knew it at a time or version."""
        return await _story(request, story_id(story), as_of, at_version)

    @get(
        "/v1/stories/{story:str}/timeline",
        responses=documented(TimelinePage, 400, 404, 409, 503),
        security=SECURED,
    )
    async def timeline(
        request: Request[Any, Any, Any],
        reached: Reached,
        story: StoryPath,
        as_of: AsOf = None,
        at_version: AtVersion = None,
    ) -> Ready:
        """Every visible update of the story, in (time, precision, version) order."""
        reader = reader_of(request)
        story = seen_story(request, story)
        models = await reader.models()
        if as_of is None and at_version is None:
            entries = await _timeline_now(reader, grant_of(request), story)
        else:
            when = then(as_of, at_version)
            grant = grant_of(request)
            gone = None if grant.audits else await reader.recalled(story)
            state = await reader.folded(story, as_of=when, at_version=at_version, gone=gone)
            entries = state.timeline if state else []
        if not entries and await reader.log.version(story) == 0:
            raise no_story(story)
        entries = lens_of(request).entries(entries)
        return answer(request, _encode(TimelinePage(models.version, entries)))

    @get(
        "/v1/stories/{story:str}/history",
        responses=documented(list[dict[str, Any]], 400, 404),
        security=SECURED,
    )
    async def history(
        request: Request[Any, Any, Any],
        story: StoryPath,
        as_of: AsOf = None,
        at_version: AtVersion = None,
    ) -> Ready:
        """The story's updates as the log holds them, version 1 first (the audit trail).

        To a `reader` (not `editor` or `ops`) an update since recalled as erroneous (a
        `canceled` retraction) shows as recalled: its envelope with `recalled: true` and
        `recalledby` (the retraction's id), without its `data`."""
        reader = reader_of(request)
        story = seen_story(request, story)
        when = then(as_of, at_version)
        records = await reader.history(story, as_of=when, at_version=at_version)
        if not records and await reader.log.version(story) == 0:
            raise no_story(story)
        if not grant_of(request).audits:
            whole = records if when is None and at_version is None else None
            records = redact(records, await reader.recalled(story, whole))
        records = lens_of(request).records(records)
        return answer(request, b"[" + b",".join(records) + b"]")

    @get(
        "/v1/stories/{story:str}/jsonld",
        responses=documented(dict[str, Any], 400, 404, media_type="application/ld+json"),
        security=SECURED,
    )
    async def story_jsonld(request: Request[Any, Any, Any], story: StoryPath) -> Ready:
        """schema.org JSON-LD: an Event, with Quotations and CorrectionComments."""
        reader = reader_of(request)
        view = await state_of(reader, grant_of(request), story_id(story), None, None)
        base = request.app.state.get("public_url", "")  # never the request's Host
        return answer(request, _encode(jsonld(view, base)), "application/ld+json")

    @get(
        "/v1/stories/{story:str}/timelinejs",
        responses=documented(dict[str, Any], 400, 404),
        security=SECURED,
    )
    async def story_timelinejs(request: Request[Any, Any, Any], story: StoryPath) -> Ready:
        """The timeline as TimelineJS 3 JSON."""
        reader = reader_of(request)
        grant = grant_of(request)
        view = await state_of(reader, grant, story_id(story), None, None)
        entries = lens_of(request).entries(await _timeline_now(reader, grant, view.id))
        return answer(request, _encode(timelinejs(view, entries)))

    return [stories, story, timeline, history, story_jsonld, story_timelinejs]
