"""Every refusal of the HTTP services as RFC 9457 problem details, built in one place.

A route raises `Refused` (or a service's own exception, mapped by its app); the app's
handlers answer with `application/problem+json`. The last resort, `unhandled`, logs an
unexpected error with its traceback and answers 500: never swallowed, never bare.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import (
    ASGIApp,
    Receive,
    Scope,
    Send,
)
from redis.exceptions import (
    ClusterError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dateline.store.connection import described, out_of_room, outage, refuses_writes
from dateline.web.ready import Ready

PROBLEM = "application/problem+json"
_encode = msgspec.json.Encoder().encode
Handler = Callable[[Request[Any, Any, Any], Any], Response[bytes]]


def urn(kind: str) -> str:
    """A problem's type: `urn:dateline:problem:<kind>`."""
    return f"urn:dateline:problem:{kind}"


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str


class Refused(Exception):
    """A request the service will not carry out; `problem` says why."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(urn(kind), title, status, detail)
        self.headers = headers or {}


def respond(problem: Problem, headers: dict[str, str] | None = None) -> Response[bytes]:
    """The response for a problem (of any shape a service extends it to)."""
    return Response(
        _encode(problem), status_code=problem.status, media_type=PROBLEM, headers=headers
    )


def problem_response(
    kind: str, title: str, status: int, detail: str, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return respond(Problem(urn(kind), title, status, detail), headers)


def refused(request: Request[Any, Any, Any], exc: Refused) -> Response[bytes]:
    return respond(exc.problem, exc.headers)


_KINDS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
}


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own refusals (a bad parameter, no route, a wrong method) as problems,
    with the parameter each names and its header (Allow on a 405, RFC 9110)."""
    detail = str(exc.detail)
    extra = getattr(exc, "extra", None)
    if extra:
        detail += ": " + "; ".join(
            f"{e.get('key', '?')}: {e.get('message', '')}" if isinstance(e, dict) else str(e)
            for e in extra
        )
    kind = _KINDS.get(exc.status_code, "http-error")
    body = Problem(urn(kind), str(exc.detail), exc.status_code, detail)
    return respond(body, dict(exc.headers or {}))


def unhandled(service: str) -> Handler:
    log = structlog.get_logger(f"dateline.{service}")

    def handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        log.exception(
            "request failed", method=request.method, path=request.url.path, error=described(exc)
        )
        detail = f"{type(exc).__name__}: the {service} service logged the details"
        return problem_response("internal", "Internal error", 500, detail)

    return handler


RETRY_AFTER_S = 1
FULL = {
    "ingest": "the log's server is out of memory (its maxmemory) or cannot write its disk; "
    "this update was not written. Send it again, with the same id, once ops made room",
}
REFUSING = {
    "ingest": "the log's server refuses writes for now (too few replicas for its "
    "min-replicas-to-write, or it is a replica); this update was not written. Send it "
    "again, with the same id, shortly",
}
UNAVAILABLE = {
    "ingest": "the log's server cannot be reached; this update may or may not be in the "
    "log. Sending it again with the same id is safe: a duplicate is accepted once",
    "query": "the read models' server cannot be reached; ask again shortly",
}


def unavailable(service: str) -> Handler:
    """The server is down or restarting: a 503 to retry, one log line, no traceback."""
    log = structlog.get_logger(f"dateline.{service}")
    detail = UNAVAILABLE.get(service, "Redis cannot be reached; ask again shortly")

    def handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        log.warning(
            f"{outage(exc)}; answered 503",
            method=request.method,
            path=request.url.path,
            error=described(exc),
        )
        return respond(
            Problem(urn("unavailable"), "Service unavailable", 503, detail),
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    return handler


def full_or_unhandled(service: str) -> Handler:
    """A server that refuses writes for now (`connection.refuses_writes`): over its
    `maxmemory` (`-OOM`, noeviction) or failing its AOF (`-MISCONF`), till ops make room;
    short of replicas (`-NOREPLICAS`) or a replica (`-READONLY`), till they are back.
    Nothing was written, and a 503 says so. Any other error reply is a bug: `unhandled`."""
    log = structlog.get_logger(f"dateline.{service}")
    other = unhandled(service)
    full = FULL.get(service, "Redis is out of memory; ask again once ops made room")
    refusing = REFUSING.get(service, "Redis refuses writes for now; ask again shortly")

    def handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        if not refuses_writes(exc):
            return other(request, exc)
        if out_of_room(exc):
            said, kind, detail, retry = "out of memory", "server-full", full, FULL_RETRY_AFTER_S
        else:
            said, kind, detail, retry = "refuses writes", "refusing-writes", refusing, RETRY_AFTER_S
        log.error(f"Redis {said}; answered 503", path=request.url.path, error=str(exc))
        return respond(
            Problem(urn(kind), "Service unavailable", 503, detail), {"Retry-After": str(retry)}
        )

    return handler


FULL_RETRY_AFTER_S = 30
_CONTROL_IN_PATH = re.compile("[\x00-\x1f\x7f]")


def refuse_control_characters(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: a path holding a control character (a NUL from `%00`, say) is a
    400 problem, before a route sees it; the static files route raised on one (500)."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == ScopeType.HTTP else ""
        if not _CONTROL_IN_PATH.search(path):
            await app(scope, receive, send)
            return
        detail = "path: control characters (such as %00) have no place in a path"
        await send_problem(send, Problem(urn("bad-path"), "Bad path", 400, detail))

    return guarded


async def send_problem(send: Send, problem: Problem, headers: dict[str, str] | None = None) -> None:
    """A problem answered by ASGI middleware, before any route (and its handlers) ran."""
    body = _encode(problem)
    raw = [(b"content-type", PROBLEM.encode()), (b"content-length", b"%d" % len(body))]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await Ready(problem.status, raw, body).send_to(send)


def handlers(service: str) -> dict[type[Exception] | int, Handler]:
    """The exception handlers every HTTP service starts from."""
    down = unavailable(service)
    return {
        Refused: refused,
        HTTPException: http_error,
        RedisConnectionError: down,
        RedisTimeoutError: down,
        # A cluster mid-failover: a shard without a master yet (or not known to be); or a
        # slot moving to another node (TRYAGAIN, and redis-py's TTL after it).
        ClusterError: down,
        SlotNotCoveredError: down,
        TryAgainError: down,
        ResponseError: full_or_unhandled(service),
        Exception: unhandled(service),
    }
