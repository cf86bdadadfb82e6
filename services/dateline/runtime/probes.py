"""Health, readiness and metrics for the services that speak no HTTP (projector, validator).

Served from the service's own event loop, so an answer also says the loop is turning:
a thread-based server would keep answering while the loop was stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

from dateline.runtime.metrics import METRICS_TYPE, latest

log = structlog.get_logger("dateline.runtime.probes")
Ready = Callable[[], Awaitable[str | None]]
"""None when ready, else why not."""


@contextlib.asynccontextmanager
async def probes(host: str, port: int, ready: Ready) -> AsyncIterator[int]:
    """Serve GET /healthz, /readyz and /metrics while the block runs; yields the port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers: none matter here
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else ""
            if path == "/healthz":
                status, body, kind = "200 OK", b'{"status":"ok"}', "application/json"
            elif path == "/readyz":
                why = await ready()
                if why is None:
                    status, body, kind = "200 OK", b'{"status":"ready"}', "application/json"
                else:
                    status, kind = "503 Service Unavailable", "application/json"
                    body = (
                        b'{"status":"not ready","detail":"' + why.replace('"', "'").encode() + b'"}'
                    )
            elif path == "/metrics":
                status, body, kind = "200 OK", latest(), METRICS_TYPE
            else:
                status, body, kind = "404 Not Found", b'{"status":"not found"}', "application/json"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    if not port:
        yield 0
        return
    server = await asyncio.start_server(answer, host, port)
    bound = server.sockets[0].getsockname()[1]
    log.info("probes listening", url=f"http://{host}:{bound}/", paths="/healthz /readyz /metrics")
    async with server:
        yield bound
