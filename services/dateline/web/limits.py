"""How many requests a process works on at once: its memory is bounded by it.

A read holds its answer until the client has taken it: 1,000 concurrent reads of a
story of 6,000 statements (about a megabyte each) took a query process from 91 to 536
MB in the chaos run. Past `limit` requests at once, the next ones wait their turn for
`wait_s` at most, then get a 503 with `Retry-After`. Live streams have a cap of their
own (`DATELINE_MAX_LIVE_STREAMS`), and probes never queue behind reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from dateline.runtime.metrics import REQUESTS_WAITING
from dateline.web.problems import Problem, send_problem, urn

log = structlog.get_logger("dateline.web.limits")
UNQUEUED = ("/healthz", "/readyz", "/metrics")
SEND_TIMEOUT_S = 30.0
"""A client that takes no write of an answer for this long gives its place up."""


def unqueued(path: str) -> bool:
    """Requests that do not take a place: probes, and live streams (capped apart)."""
    return path in UNQUEUED or path.endswith("/live")


def bound_requests(
    app: ASGIApp,
    limit: int,
    wait_s: float = 10.0,
    service: str = "query",
    exempt: Callable[[str], bool] = unqueued,
    send_timeout_s: float = SEND_TIMEOUT_S,
) -> ASGIApp:
    """ASGI middleware: at most `limit` requests in progress, the rest wait in line."""
    places = asyncio.Semaphore(limit)

    async def bounded(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == ScopeType.HTTP else ""
        if not path or exempt(path):
            await app(scope, receive, send)
            return
        REQUESTS_WAITING.labels(service).inc()
        try:
            async with asyncio.timeout(wait_s):
                await places.acquire()
        except TimeoutError:
            log.warning("busy: request refused after waiting", path=path, waited_s=wait_s)
            detail = (
                f"this {service} process works on {limit} requests at once and this one "
                f"waited {wait_s:g} s for its turn; retry after a second"
            )
            busy = Problem(urn("busy"), "Busy", 503, detail)
            await send_problem(send, busy, {"Retry-After": "1"})
            return
        finally:
            REQUESTS_WAITING.labels(service).dec()

        async def timed_send(message: Message) -> None:
            async with asyncio.timeout(send_timeout_s):
                await send(message)

        try:
            await app(scope, receive, timed_send)
        except TimeoutError:
            client = scope.get("client")
            log.warning(
                "client stopped reading an answer; connection closed",
                path=path,
                client=f"{client[0]}:{client[1]}" if client else None,
                after_s=send_timeout_s,
            )
        finally:
            places.release()

    return bounded
