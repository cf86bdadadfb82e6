"""An answer whose head and body are bytes already: the ASGI app a route hands back.

Litestar turns a `Response` into an ASGI app on every request: its headers go through
a mutable headers object, its media type and length are worked out again, its cookies
and background tasks looked for. On a story read served from the query process's cache
that was about a quarter of the process's CPU: 151 us a read with it, 110 to 116 without
(60,000 cached reads over 8 connections; `docs/read-side.md`). A route that returns a
`Ready` (its return annotation says so) is handed straight to the server; `before_send`
hooks and the middleware still see its messages.
"""

from __future__ import annotations

from litestar.types import Receive, Scope, Send

Headers = list[tuple[bytes, bytes]]


class Ready:
    """Status, headers and body, sent as they are."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers, body: bytes = b"") -> None:
        self.status, self.headers, self.body = status, headers, body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.send_to(send)

    async def send_to(self, send: Send) -> None:
        """The two messages of the answer: for middleware that answers before any route."""
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})
