"""/healthz, /readyz and /metrics for the HTTP services, the same on each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec

from dateline.http_errors import problem_response
from dateline.metrics import exposition

_READY = b'{"status":"ready"}'


def probe_routes(
    client: Callable[[], aioredis.Redis],
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> list[HTTPRouteHandler]:
    """`client` gives the service's Redis client once its startup hook has made it."""

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @get("/readyz", responses={200: ResponseSpec(dict[str, str], generate_examples=False)})
    async def readyz() -> Response[bytes]:
        """Redis answers: 200, else 503 with the reason (application/problem+json)."""
        try:
            await client().ping()
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
            return problem_response("not-ready", "Not ready", 503, f"Redis: {exc}")
        return Response(_READY, media_type="application/json")

    @get("/metrics", include_in_schema=False)
    async def metrics() -> Response[bytes]:
        """Prometheus metrics of this process."""
        if before_scrape is not None:
            await before_scrape()
        return exposition()

    return [healthz, readyz, metrics]
