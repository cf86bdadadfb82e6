"""The last resort of the HTTP services: an unexpected error is logged with its traceback
and answered as problem+json, never swallowed into a bare 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from litestar import Request, Response


def problem_response(kind: str, title: str, status: int, detail: str) -> Response[bytes]:
    """An RFC 9457 problem, as every service answers a refusal."""
    body = {
        "type": f"urn:dateline:problem:{kind}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    return Response(
        msgspec.json.encode(body), status_code=status, media_type="application/problem+json"
    )


def unhandled(service: str) -> Callable[[Request[Any, Any, Any], Exception], Response[bytes]]:
    log = structlog.get_logger(f"dateline.{service}")

    def handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        log.exception(
            "request failed", method=request.method, path=request.url.path, error=repr(exc)
        )
        detail = f"{type(exc).__name__}: the {service} service logged the details"
        return problem_response("internal", "Internal error", 500, detail)

    return handler
