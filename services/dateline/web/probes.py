"""/healthz, /readyz and /metrics for the HTTP services, the same on each, and the
middleware that times their requests."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import redis.asyncio as aioredis
from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ASGIApp, Receive, Scope, Send

from dateline.runtime.metrics import HTTP_SECONDS, METRICS_TYPE, latest
from dateline.store.connection import PROBE_S, UNREACHABLE, within
from dateline.store.readers import Readers, Scrapers
from dateline.web.problems import Refused, problem_response

_READY = b'{"status":"ready"}'


def probe_routes(
    client: Callable[[], aioredis.Redis],
    before_scrape: Callable[[], Awaitable[None]] | None = None,
    may_scrape: Callable[[Request[Any, Any, Any]], Awaitable[None]] | None = None,
) -> list[HTTPRouteHandler]:
    """`client` gives the service's Redis client once its startup hook has made it;
    `may_scrape` refuses a request for `/metrics` that may not have them."""

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @get("/readyz", responses={200: ResponseSpec(dict[str, str], generate_examples=False)})
    async def readyz() -> Response[bytes]:
        """Redis answers within a second: 200, else 503 with the reason
        (application/problem+json)."""
        try:
            await within(PROBE_S, client().ping(), client())
        except UNREACHABLE as exc:
            return problem_response("not-ready", "Not ready", 503, f"Redis: {exc}")
        return Response(_READY, media_type="application/json")

    @get("/metrics", include_in_schema=False)
    async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        """Prometheus metrics of this process."""
        if may_scrape is not None:
            await may_scrape(request)
        if before_scrape is not None:
            await before_scrape()
        return Response(latest(), media_type=METRICS_TYPE)

    return [healthz, readyz, metrics]


def ops_bearer(
    client: Callable[[], aioredis.Redis], prefix: str
) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A `may_scrape` for a service without readers of its own (ingest): `/metrics` for
    an `ops` reader's bearer token, as Prometheus sends it (`authorization` in its
    scrape config), or a 401 / 403 problem. Through a Redis outage, for a token Redis
    said was an `ops` reader's within the hour (`Scrapers`)."""
    scrapers = Scrapers()

    async def check(request: Request[Any, Any, Any]) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        grant = None
        if scheme.lower() == "bearer":
            try:
                grant = await within(
                    PROBE_S, Readers(client(), prefix).authenticate(token), client()
                )
            except UNREACHABLE:
                if (grant := scrapers.through_outage(token)) is None:
                    raise  # a 503, as before: nothing says this token may scrape
            else:
                scrapers.checked(token, grant)
        if grant is None:
            raise Refused(
                401,
                "unauthorized",
                "Not signed in",
                "/metrics: send 'Authorization: Bearer <token>' of an ops reader "
                "(dateline readers add NAME --role ops)",
                {"WWW-Authenticate": 'Bearer realm="dateline"'},
            )
        if not grant.operates:
            raise Refused(
                403,
                "forbidden",
                "Operations only",
                f"/metrics: reader {grant.name!r} has the role {grant.role!r}, not 'ops'",
            )

    return check


ROUTE = "dateline.route"
"""In a request's scope: the route template of an answer given before Litestar routed
the request (`query/front.py`), for the latency metric's label."""


def _route(scope: Scope) -> str:
    named = cast("dict[str, Any]", scope).get(ROUTE)
    if isinstance(named, str):
        return named
    handler = scope.get("route_handler")
    return next(iter(handler.paths)) if handler is not None else "unmatched"


def timed(service: str) -> Any:
    """ASGI middleware factory: request latency by route template and status."""

    def middleware(app: ASGIApp) -> ASGIApp:
        observers: dict[tuple[str, int], Any] = {}  # labels() costs more than observe()

        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = 500

            async def sending(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    route = _route(scope)
                    observer = observers.get((route, status))
                    if observer is None:
                        observer = HTTP_SECONDS.labels(service, route, str(status))
                        observers[(route, status)] = observer
                    observer.observe(time.perf_counter() - start)
                await send(message)

            await app(scope, receive, sending)

        return wrapped

    return middleware
