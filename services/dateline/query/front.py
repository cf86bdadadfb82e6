"""Story reads the process holds, answered before Litestar routes them.

Dashboards poll their stories, and the query process keeps what the story route
rendered of each until a commit of its partition (`cache.py`). Served through Litestar,
such a read spent most of its CPU in Litestar's routing, its middleware stack, the
route's dependencies and its signature, around a dictionary lookup: 320 us a read, of
which 135 are left without them (this VM, `docs/read-side.md`).

`KeptReads` stands in front of the app's router and answers `GET /v1/stories/{id}`
itself when all the answer depends on is in memory: the reader's grant by its bearer
token (`KnownGrants`), the active version, and what the route rendered for a reader who
sees the story alike (`Lens`). The answer is the route's (`answer_to`, with the bytes
and ETag the route made), through the same guards (`guards`: the path check, the rate,
the places, the timing, with the process's shared limits), and, as `Litestar.__call__`
runs before it, through the same `before_send` headers. Anything else goes on to
Litestar as before: a query string, a cookie session, a grant or story not held, an
`Origin` while CORS is on (its headers are Litestar's), a header sent twice. There is no
I/O here, so nothing can fail here that Litestar would answer otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from dateline.query.access import bearer_token
from dateline.query.routes.common import answer_to
from dateline.query.routes.stories import STORY_ROUTE
from dateline.query.scope import Lens
from dateline.web.limits import Middleware
from dateline.web.probes import ROUTE
from dateline.web.ready import Ready
from dateline_schemas import RuleError, check_story_id

PREFIX = STORY_ROUTE.removesuffix("{story:str}")
KEPT = "dateline.kept"
"""In a request's scope: the answer decided on, for the innermost of the guards."""
_ASKED = (b"authorization", b"if-none-match", b"origin")


async def _send_kept(scope: Scope, receive: Receive, send: Send) -> None:
    ready: Ready = cast("dict[str, Any]", scope).pop(KEPT)
    await ready.send_to(send)


class KeptReads:
    """The app's ASGI handler with the story reads it holds answered in front of it."""

    def __init__(
        self, app: ASGIApp, state: State, guards: Sequence[Middleware], *, cors: bool
    ) -> None:
        self.app, self.state, self.cors = app, state, cors
        served: ASGIApp = _send_kept
        for guard in reversed(guards):
            served = guard(served)
        self.served = served
        self.answered = 0
        """Reads answered here: the tests check that they were."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ready = self._held(scope) if scope["type"] == ScopeType.HTTP else None
        if ready is None:
            await self.app(scope, receive, send)
            return
        self.answered += 1
        marked = cast("dict[str, Any]", scope)
        marked[KEPT], marked[ROUTE] = ready, STORY_ROUTE
        await self.served(scope, receive, send)

    def _held(self, scope: Any) -> Ready | None:
        """The route's answer to this request if everything it depends on is held."""
        asked = self._plain_read(scope)
        reader, readers = self.state.get("reader"), self.state.get("readers")
        if asked is None or reader is None or readers is None:
            return None
        story, headers = asked
        header = headers.get(b"authorization")
        token = bearer_token(header.decode("latin-1")) if header is not None else None
        grant = readers.held(token) if token is not None else None
        models = reader.held_models()
        if grant is None or models is None or not (lens := Lens.of(grant)).sees(story):
            return None
        kept = reader.cache.held(models.version, story)
        rendered = kept.rendered.get(lens) if kept is not None else None
        if rendered is None or time.time() >= rendered[2]:
            return None
        reader.cache.used(models.version, story)
        body, tag, _ = rendered
        return answer_to(headers.get(b"if-none-match", b"").decode("latin-1"), body, tag=tag)

    def _plain_read(self, scope: Any) -> tuple[str, dict[bytes, bytes]] | None:
        """(story, the headers an answer depends on) of a GET of a story now, with no
        query string and nothing Litestar would answer otherwise; else None."""
        path: str = scope["path"]
        if scope["method"] != "GET" or scope["query_string"] or not path.startswith(PREFIX):
            return None
        story = path[len(PREFIX) :]
        try:
            check_story_id(story)  # no "/": nothing under the story either
        except RuleError:
            return None
        asked: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in _ASKED:
                if name in asked:
                    return None  # sent twice: which one counts is Litestar's to say
                asked[name] = value
        if b"origin" in asked and self.cors:
            return None
        return story, asked
