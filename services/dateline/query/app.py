"""`create_app`: the query service (read models over HTTP, live pushes, the dashboard).

Every read answers with an ETag (a hash of the body) and honours If-None-Match.
`min_position` (the position ingest returned) makes a read wait until the projection
has applied it: read-your-writes, with `wait` seconds at most, then 503. The routes
live a module per resource under `routes/`; this module wires them, with the reader
they are given, the problems they answer with, and nothing built at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib.resources import files
from pathlib import Path
from typing import Any

import structlog
from litestar import Litestar, Request, Response
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router

from dateline.query import access
from dateline.query.access import need_ops, reader_auth
from dateline.query.front import KeptReads
from dateline.query.live import LiveStreams
from dateline.query.patches import Patches
from dateline.query.reader import NotReached, Parked, Reader, Unfoldable
from dateline.query.routes import board, live, ops, stories
from dateline.query.routes.common import DEPENDENCIES
from dateline.query.trail import LagTrail, follow
from dateline.runtime.heap import give_back_large_blocks, tune_collector
from dateline.store.config import Settings
from dateline.store.connection import POOL_SIZE, UNREACHABLE, described, open_client
from dateline.store.doorbell import Doorbell
from dateline.store.log import log_keys
from dateline.store.readers import KnownGrants, Readers, Scrapers
from dateline.web.headers import secure_headers
from dateline.web.limits import bound_requests, rate_limited
from dateline.web.probes import probe_routes, timed
from dateline.web.problems import Problem, handlers, refuse_control_characters, respond, urn
from dateline.web.taken import Taken

log = structlog.get_logger("dateline.query")
STATIC = Path(__file__).parent / "static"
SWAGGER_UI = Path(str(files("swagger_ui") / "static"))
"""Swagger UI's scripts and styles, from the `swagger-ui-py` wheel: the API docs
(`/v1/docs`) load nothing from a CDN."""


def _parked(request: Request[Any, Any, Any], exc: Parked) -> Response[bytes]:
    return respond(Problem(urn("parked"), "Update parked", 409, str(exc)))


def _unfoldable(request: Request[Any, Any, Any], exc: Unfoldable) -> Response[bytes]:
    log.error(
        "story cannot be folded",
        story=exc.story,
        path=request.url.path,
        error=described(exc.error),
        exc_info=exc.error,
    )
    return respond(Problem(urn("unfoldable"), "Story cannot be folded", 500, str(exc)))


def _not_reached(request: Request[Any, Any, Any], exc: NotReached) -> Response[bytes]:
    body = Problem(urn("not-reached"), "Not there yet", 503, str(exc))
    return respond(body, {"Retry-After": "1"})


async def _ops_only(request: Request[Any, Any, Any]) -> None:
    need_ops(request)


def create_app(
    settings: Settings,
    url: str,
    *,
    poll_s: float = 1.0,
    pool_size: int = POOL_SIZE,
    kept_reads: bool = True,
) -> Litestar:
    """The query service. Clients are made at startup, not at import. `kept_reads`:
    the story reads the process holds answered in front of Litestar (`front.py`); off,
    every read goes through Litestar's routing (the tests compare the two)."""
    made: list[Reader] = []
    tasks: list[asyncio.Task[None]] = []

    async def startup(app: Litestar) -> None:
        client = await open_client(url, retry_lost=True, max_connections=pool_size)
        # As the log's config says; a reader does not make it (nor may its ACL user).
        keys = await log_keys(client, settings.prefix, settings.partitions, create=False)
        views = None
        if settings.views_url is not None:  # the read models' store, apart from the log's
            views = await open_client(
                settings.views_url, retry_lost=True, max_connections=pool_size
            )
        pace = settings.live_pace_ms / 1000
        bell = Doorbell.of(client if views is None else views, keys, poll_s, pace)
        app.state.reader = Reader(
            client, keys, bell, settings.story_cache_mb << 20, settings.seal(), views=views
        )
        with contextlib.suppress(*UNREACHABLE):  # a sealed log and no key: say so now
            await app.state.reader.sealing.refresh(client, force=True)
        known = KnownGrants()
        bell.listeners.append(known.heard)
        app.state.readers = Readers(client, settings.prefix, known, bell=views)
        app.state.scrapers = scrapers = Scrapers()
        bell.listeners.append(scrapers.heard)
        app.state.public_url = settings.public_url
        app.state.live_streams = LiveStreams(settings.max_live_streams)
        app.state.patches = Patches()
        made.append(app.state.reader)
        tasks.append(asyncio.create_task(bell.run(), name="doorbell"))
        app.state.lag_trail = trail = LagTrail()
        app.state.lag_trail_s = settings.lag_trail_s
        if settings.lag_trail_s:
            tasks.append(
                asyncio.create_task(
                    follow(app.state.reader, trail, settings.lag_trail_s), name="lag trail"
                )
            )
        tune_collector()
        give_back_large_blocks()  # a long story's answer, megabytes, held per request

    async def shutdown() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for reader in made:
            await reader.client.aclose()
            if reader.apart:
                await reader.views.aclose()

    def reader() -> Reader:
        if not made:
            raise RuntimeError("the query app was used before its startup hook ran")
        return made[0]

    # Built once: each route and the kept reads (`front.py`) share the process's limits.
    # Middleware that every read must pass goes here: the kept reads skip the rest.
    guards = [
        refuse_control_characters,
        rate_limited(settings.rate_limit, "query"),
        bound_requests(settings.max_requests),
        timed("query"),
    ]
    taken = Taken()
    app = Litestar(
        route_handlers=[
            *stories.routes(),
            *board.routes(),
            *live.routes(),
            *ops.routes(),
            *access.routes(),
            *probe_routes(
                lambda: reader().client, lambda: ops.scrape(reader()), may_scrape=_ops_only
            ),
            create_static_files_router(
                "/v1/docs/assets", [SWAGGER_UI], name="swagger-ui", include_in_schema=False
            ),
            create_static_files_router("/", [STATIC], html_mode=True, name="dashboard"),
        ],
        dependencies=DEPENDENCIES,
        openapi_config=OpenAPIConfig(
            title="dateline query API",
            version="1",
            path="/v1/schema",  # Litestar's own: its UIs load scripts from CDNs
            render_plugins=[JsonRenderPlugin()],
            description="Read models of developing news stories, live pushes, exports. "
            "Every route but the probes and these documents needs a reader's token "
            "(`dateline readers add NAME`) as `Authorization: Bearer <token>`, or the "
            "dashboard's session cookie; a reader limited to story prefixes sees only "
            "those stories, and `/v1/status` is for the `ops` role.",
            components=Components(
                security_schemes={
                    "reader": SecurityScheme(
                        type="http", scheme="bearer", description="A reader's token (dr_...)."
                    )
                }
            ),
        ),
        before_send=[secure_headers],
        before_request=taken.check,
        middleware=[*guards, reader_auth],
        # Off unless origins are listed: a page elsewhere reads the API with a token it
        # holds (never with the dashboard's cookie, which is SameSite=Strict).
        cors_config=CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET"],
            allow_headers=["Authorization", "Last-Event-ID", "If-None-Match"],
            expose_headers=["ETag", "Retry-After"],
        )
        if settings.cors_origins
        else None,
        on_startup=[startup],
        on_shutdown=[shutdown],
        exception_handlers={
            **handlers("query"),
            NotReached: _not_reached,
            Parked: _parked,
            Unfoldable: _unfoldable,
        },
        debug=False,
    )
    taken.learn(app)
    if kept_reads:
        # In front of the router, inside `Litestar.__call__` (its `before_send` hooks).
        app.asgi_handler = KeptReads(
            app.asgi_handler, app.state, guards, cors=bool(settings.cors_origins)
        )
    return app
