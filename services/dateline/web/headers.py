"""Headers every answer of an HTTP service carries: what a browser may do with it.

The dashboard runs under a Content-Security-Policy with no inline script and nothing
from another origin (its scripts, styles and the API docs' Swagger UI are served by
the service itself), may not be framed (clickjacking), sends no referrer, and no
answer is sniffed into another type.
"""

from __future__ import annotations

from litestar.types import Message, Scope

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURE = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


async def secure_headers(message: Message, scope: Scope) -> None:
    """A `before_send` hook: `SECURE` on every response start, refusals by middleware
    (a 401 before any route) included; a header the app set wins."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers", []))
    have = {k.lower() for k, _ in headers}
    headers += [(k, v) for k, v in SECURE if k not in have]
    message["headers"] = headers
