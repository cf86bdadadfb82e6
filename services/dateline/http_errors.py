"""The last resort of the HTTP services: an unexpected error is logged with its traceback
and answered as problem+json, never swallowed into a bare 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from litestar import Request, Response


def unhandled(service: str) -> Callable[[Request[Any, Any, Any], Exception], Response[bytes]]:
    log = structlog.get_logger(f"dateline.{service}")

    def handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        log.exception(
            "request failed", method=request.method, path=request.url.path, error=repr(exc)
        )
        body = {
            "type": "urn:dateline:problem:internal",
            "title": "Internal error",
            "status": 500,
            "detail": f"{type(exc).__name__}: the {service} service logged the details",
        }
        return Response(
            msgspec.json.encode(body), status_code=500, media_type="application/problem+json"
        )

    return handler
