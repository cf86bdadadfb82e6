"""How many requests a process works on at once (its memory is bounded by it), and how
fast one client may send them.

A read holds its answer until the client has taken it: 1,000 concurrent reads of a
story of 6,000 statements (about a megabyte each) took a query process from 91 to 536
MB in the chaos run. Past `limit` requests at once, the next ones wait their turn for
`wait_s` at most, then get a 503 with `Retry-After`. Live streams have a cap of their
own (`DATELINE_MAX_LIVE_STREAMS`), and probes never queue behind reads. A client that
stops taking what it asked for is dropped (`web/server.py`), giving its place up.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from dateline.runtime.metrics import REQUESTS_WAITING
from dateline.web.problems import Problem, send_problem, urn

log = structlog.get_logger("dateline.web.limits")
UNQUEUED = ("/healthz", "/readyz", "/metrics")
SLOW_CLIENT_S = 30.0
SLOW_CLIENT_BYTES = 64 * 1024
"""A client whose writes are held back (its socket full) and that takes fewer than
`SLOW_CLIENT_BYTES` of them in `SLOW_CLIENT_S` is dropped: what waits for it (an answer,
a live stream's pages) would sit in this process's memory, and hold its place. A client
that reads slowly but reads (a 5.4 MB story over a slow link) is kept: it must take
about 2 KB a second, not its whole answer within the window. What a client took is
counted to its kernel's acknowledgement, so one that stopped reading may keep a second
window while its own receive buffer fills."""


def unqueued(path: str) -> bool:
    """Requests that do not take a place: probes, and live streams (capped apart)."""
    return path in UNQUEUED or path.endswith("/live")


Middleware = Callable[[ASGIApp], ASGIApp]
"""An ASGI app around another. Litestar builds an app's `middleware` once for each route;
those below keep their state outside the app they wrap, so that every route (and the
query's kept reads, `query/front.py`) shares one process's limits."""


def bound_requests(
    limit: int,
    wait_s: float = 10.0,
    service: str = "query",
    exempt: Callable[[str], bool] = unqueued,
) -> Middleware:
    """ASGI middleware: at most `limit` requests of this process in progress, the rest
    wait in line; the places are shared by every app it wraps."""
    places = asyncio.Semaphore(limit)
    waiting = REQUESTS_WAITING.labels(service)

    def wrap(app: ASGIApp) -> ASGIApp:
        async def bounded(scope: Scope, receive: Receive, send: Send) -> None:
            path = scope.get("path", "") if scope["type"] == ScopeType.HTTP else ""
            if not path or exempt(path):
                await app(scope, receive, send)
                return
            if places.locked():  # else a place is free: taken at once, with no timer to set
                waiting.inc()
                try:
                    async with asyncio.timeout(wait_s):
                        await places.acquire()
                except TimeoutError:
                    log.warning("busy: request refused after waiting", path=path, waited_s=wait_s)
                    detail = (
                        f"this {service} process works on {limit} requests at once and this "
                        f"one waited {wait_s:g} s for its turn; retry after a second"
                    )
                    busy = Problem(urn("busy"), "Busy", 503, detail)
                    await send_problem(send, busy, {"Retry-After": "1"})
                    return
                finally:
                    waiting.dec()
            else:
                await places.acquire()
            try:
                await app(scope, receive, send)
            finally:
                places.release()

        return bounded

    return wrap


@dataclass
class Buckets:
    """Token buckets by key: `rate` a second, `burst` at once; idle ones forgotten."""

    rate: float
    burst: float
    levels: dict[str, tuple[float, float]] = field(default_factory=dict)
    """key -> (tokens, when last counted)"""
    _swept: float = 0.0

    def take(self, key: str, now: float) -> float:
        """0 if `key` may go now (one token taken), else the seconds until it may."""
        tokens, then = self.levels.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1:
            self.levels[key] = (tokens, now)
            return (1 - tokens) / self.rate
        self.levels[key] = (tokens - 1, now)
        if now - self._swept > IDLE_S:  # full again long since: as good as new
            self.levels = {k: v for k, v in self.levels.items() if now - v[1] < IDLE_S}
            self._swept = now
        return 0.0


IDLE_S = 60.0


def _unwrapped(app: ASGIApp) -> ASGIApp:
    return app


def rate_limited(rate: float, service: str) -> Middleware:
    """ASGI middleware: at most `rate` requests a second (bursts of two seconds' worth) per
    bearer token and per client address, before the token is even checked; past it a
    429 with `Retry-After`. 0: off. Per process (its buckets are shared by every app it
    wraps): N processes allow N times as many. Probes are never limited; live streams
    are (a reconnecting storm is requests too)."""
    if rate <= 0:
        return _unwrapped
    by_token, by_address = Buckets(rate, 2 * rate), Buckets(rate, 2 * rate)

    def wrap(app: ASGIApp) -> ASGIApp:
        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            path = scope.get("path", "") if scope["type"] == ScopeType.HTTP else ""
            if not path or path in UNQUEUED:
                await app(scope, receive, send)
                return
            now = time.monotonic()
            client = scope.get("client")
            wait = by_address.take(client[0] if client else "?", now)
            auth = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            if auth is not None and not wait:
                wait = by_token.take(hashlib.blake2b(auth, digest_size=16).hexdigest(), now)
            if not wait:
                await app(scope, receive, send)
                return
            log.warning("rate limited", path=path, client=client[0] if client else None)
            detail = (
                f"more than {rate:g} requests a second from this client or token to this "
                f"{service} process; retry after {math.ceil(wait)} s"
            )
            problem = Problem(urn("rate-limited"), "Too many requests", 429, detail)
            await send_problem(send, problem, {"Retry-After": str(math.ceil(wait))})

        return limited

    return wrap
