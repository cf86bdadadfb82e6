"""What the query routes share: the injected reader, read-your-writes, parameters, docs."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter, QueryParameter

from dateline.query.access import grant_of
from dateline.query.reader import Reader
from dateline.query.scope import Lens
from dateline.query.views import etag
from dateline.web import params
from dateline.web.problems import PROBLEM, Problem, Refused
from dateline.web.ready import Ready
from dateline_schemas import STORY_ID_PATTERN, RuleError, check_story_id

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


SECURED: list[dict[str, list[str]]] = [{"reader": []}]
"""The OpenAPI `security` of every route that needs a reader (the scheme is the app's)."""

Reached = NamedDependency[None]
"""A route that takes `reached` answers only once `min_position` is applied, or refuses."""


def reader_of(request: Request[Any, Any, Any]) -> Reader:
    """The query service's reader, which its startup hook made.

    Read from the app's state, not injected: Litestar's injection of it cost 12 us a
    request (8% of a story read) for an object that never changes."""
    reader = request.app.state.get("reader")
    if reader is None:
        raise RuntimeError("the query app was used before its startup hook ran")
    return reader  # type: ignore[no-any-return]  # State holds what startup put there


async def _reached(
    request: Request[Any, Any, Any], min_position: MinPosition = None, wait: Wait = 5.0
) -> None:
    """Read-your-writes: wait until the projection has applied `min_position`."""
    if min_position is not None:
        reader = reader_of(request)
        position = params.position(min_position, "min_position", reader.keys.partitions)
        await reader.wait_for(position, wait)


DEPENDENCIES = {"reached": Provide(_reached)}
"""Injected into every route that names it: a route that takes `reached` answers only
once `min_position` is applied, or refuses; its parameters are documented on each."""


_WHY = {
    304: "The client's copy (If-None-Match) is current.",
    400: "A parameter is malformed, or not one the route takes; the detail names it.",
    401: "No reader's token (`Authorization: Bearer`), or session, or one that is unknown or"
    " revoked.",
    403: "The reader's role may not: `/v1/status` is for `ops`.",
    429: "More than DATELINE_RATE_LIMIT requests a second from this token or address;"
    " `Retry-After` says when to ask again.",
    404: "No such story.",
    409: "The update at `min_position` is parked: the projector could not apply it, and the"
    " read models will not show it until ops redrive it (the detail says how).",
    503: "The projection has not reached `min_position` within `wait` seconds.",
}


def documented(
    ok: Any, *errors: int, media_type: str = "application/json"
) -> dict[int, ResponseSpec]:
    """The documented answers of a read: `ok` on 200, problems on the `errors`."""
    specs = {
        200: ResponseSpec(ok, media_type=media_type, generate_examples=False),
        304: ResponseSpec(None, description=_WHY[304]),
    }
    for code in (400, 401, 429, *errors):  # 400: any route refuses a parameter it does not take
        specs[code] = ResponseSpec(
            Problem, media_type=PROBLEM, description=_WHY[code], generate_examples=False
        )
    return specs


def answer(
    request: Request[Any, Any, Any],
    body: bytes,
    media_type: str = "application/json",
    tag: str | None = None,
) -> Ready:
    """JSON with an ETag (`tag`, if the caller made it already); 304 when the client
    already has these bytes."""
    return answer_to(request.headers.get("if-none-match", ""), body, media_type, tag)


def answer_to(
    seen: str, body: bytes, media_type: str = "application/json", tag: str | None = None
) -> Ready:
    """`answer`, given the request's If-None-Match (`seen`, "" if none)."""
    tag = tag or etag(body)
    headers = [(b"etag", tag.encode()), (b"cache-control", b"no-cache")]
    if seen and (
        seen.strip() == "*" or tag in (t.strip().removeprefix("W/") for t in seen.split(","))
    ):
        return Ready(304, headers)
    length = b"%d" % len(body)
    return Ready(
        200, [(b"content-type", media_type.encode()), (b"content-length", length), *headers], body
    )


def story_id(value: str) -> str:
    try:
        check_story_id(value)
    except RuleError as exc:
        raise Refused(400, "bad-story-id", "Bad story id", f"story id: {exc}") from None
    return value


def no_story(story: str, when: str = "has no updates") -> Refused:
    return Refused(404, "not-found", "No such story", f"story {story!r} {when}")


def lens_of(request: Request[Any, Any, Any]) -> Lens:
    return Lens.of(grant_of(request))


def seen_story(request: Request[Any, Any, Any], value: str) -> str:
    """The story id, checked, if this request's reader may see it; else the answer of a
    story that has no updates (one outside its prefixes is not said to exist)."""
    story = story_id(value)
    if not grant_of(request).sees(story):
        raise no_story(story)
    return story
