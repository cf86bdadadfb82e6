"""For the people who run it: where the projection stands, and this API's own document."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from dateline.query.access import need_ops
from dateline.query.reader import Reader
from dateline.query.routes.common import SECURED, answer, documented, reader_of
from dateline.query.trail import Trail
from dateline.runtime import status
from dateline.store.connection import PROBE_S, UNREACHABLE, within
from dateline.store.disk import disks
from dateline.web.ready import Ready

_encode = msgspec.json.Encoder().encode


def routes() -> list[HTTPRouteHandler]:
    @get("/v1/status", responses=documented(status.Status, 403), security=SECURED)
    async def status_route(request: Request[Any, Any, Any]) -> Ready:
        """Operations: per partition lag, pending and leases; parked updates; versions.
        For the `ops` role."""
        need_ops(request)
        reader = reader_of(request)
        models = await reader.models()
        found = await status.report(reader.client, reader.keys, models, reader.views)
        return answer(request, _encode(found))

    @get("/v1/status/lag", responses=documented(Trail, 403), security=SECURED)
    async def lag_trail(request: Request[Any, Any, Any]) -> Ready:
        """The projection's lag over the last five minutes, as this process read it every
        few seconds (`DATELINE_LAG_TRAIL_S`), oldest first, with its clock now: the
        operations page draws them as it opens. For the `ops` role."""
        need_ops(request)
        now, state = time.time(), request.app.state
        found = Trail(now, state.lag_trail_s, state.lag_trail.points(now))
        return answer(request, _encode(found))

    document = b""

    @get("/v1/openapi.json", include_in_schema=False)
    async def openapi(request: Request[Any, Any, Any]) -> Response[bytes]:
        """The OpenAPI document, generated from the msgspec Structs the routes return.

        Made once: the routes do not change while the app runs, and making it held the
        event loop 15 to 18 ms a request."""
        nonlocal document
        if not document:
            document = _encode(request.app.openapi_schema.to_schema())
        return Response(document, media_type="application/json")

    @get("/v1/docs", include_in_schema=False, status_code=303)
    async def docs() -> Response[None]:
        """The API's document in Swagger UI (served by this service, scripts and all)."""
        return Response(None, status_code=303, headers={"Location": "/docs.html"})

    return [status_route, lag_trail, openapi, docs]


async def scrape(reader: Reader) -> None:
    """The projection's lag and parked updates, the servers' AOF, as they are now: cheap
    reads only, each part given a second (a scrape of a server that does not answer
    must still answer Prometheus in its 10)."""
    try:
        await within(PROBE_S, _gauges(reader))
    except UNREACHABLE:  # the scrape goes on: this process's own metrics, and why not
        status.forget_gauges()
    found = await disks(reader.client)
    status.record_disks(found + (await disks(reader.views) if reader.apart else []))


async def _gauges(reader: Reader) -> None:
    models = await reader.models()
    status.record(await status.gauges(reader.client, reader.keys, models, reader.views))
    status.record_deliveries(await status.deliveries(reader.client, reader.keys))
