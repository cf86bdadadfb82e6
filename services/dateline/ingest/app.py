"""`POST /v1/updates`: CloudEvents in, one result per update out, nothing lost either way.

Content types: application/cloudevents+json (one update, structured mode),
application/cloudevents-batch+json (a JSON array), application/x-ndjson (a line each),
and binary mode: application/json data with the attributes in `ce-*` headers.
Status: 202 when something was appended, 200 when all were duplicates; otherwise
the worst outcome: 403 (a feed wrote outside its credentials: nothing is written),
422 (invalid updates), 409 (expectedversion conflicts). 400 when the body cannot
be split into updates, 413 over the limits, 415 for another content type, 401
without a valid token. Every refusal is application/problem+json (RFC 9457).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog
from litestar import Litestar, Request, Response, get, post
from litestar.params import FromQuery

from dateline.ingest.admit import Forbidden, admit
from dateline.ingest.credentials import Credentials, Feed, Refusal
from dateline.ingest.openapi import document
from dateline.ingest.outcomes import counting, reused
from dateline.ingest.wire import (
    Accepted,
    FieldProblem,
    Problem,
    binary,
    is_binary,
    split,
    status_of,
)
from dateline.runtime.heap import give_back_large_blocks, tune_collector
from dateline.runtime.metrics import UPDATES
from dateline.store.config import Settings
from dateline.store.connection import POOL_SIZE, open_client
from dateline.store.log import (
    AppendFunctionMissing,
    AppendResult,
    CrossPartitionBatch,
    Log,
    LogMoving,
    NotReplicated,
    log_keys,
)
from dateline.web.headers import secure_headers
from dateline.web.limits import rate_limited
from dateline.web.probes import ops_bearer, probe_routes, timed
from dateline.web.problems import Refused, handlers, refuse_control_characters, respond
from dateline.web.taken import Taken
from dateline_schemas import MAX_BATCH_BYTES, Decoded

log = structlog.get_logger("dateline.ingest")
_encode = msgspec.json.Encoder().encode


@dataclass
class _Services:
    """Built at startup, so importing or creating the app connects to nothing."""

    log_: Log | None = None
    credentials_: Credentials | None = None

    @property
    def log(self) -> Log:
        if self.log_ is None:
            raise RuntimeError("the ingest app was used before its startup hook ran")
        return self.log_

    @property
    def credentials(self) -> Credentials:
        if self.credentials_ is None:
            raise RuntimeError("the ingest app was used before its startup hook ran")
        return self.credentials_


def check(
    feed: Feed, items: list[bytes]
) -> tuple[list[Decoded | None], list[FieldProblem], list[FieldProblem]]:
    """Decode each update; (decoded or None, invalid ones, ones the feed may not write)."""
    decoded: list[Decoded | None] = []
    errors: list[FieldProblem] = []
    forbidden: list[FieldProblem] = []
    for i, raw in enumerate(items):
        match admit(feed, raw):
            case Forbidden(field, detail):
                decoded.append(None)
                forbidden.append(FieldProblem(i, field, detail))
            case Refusal(field, detail):
                decoded.append(None)
                errors.append(FieldProblem(i, field, detail))
            case admitted:
                decoded.append(admitted)
    return decoded, errors, forbidden


def _count_and_log(feed: str, status: int, results: list[AppendResult]) -> None:
    for outcome, count in Counter(r.status for r in results).items():
        UPDATES.labels("ingest", outcome).inc(count)
    reused(log, "ingest", feed, results)
    # A line per update with story, id and position bound, to grep a story's way in:
    # refused ones always, accepted ones at debug level.
    every = log.bind().is_enabled_for(logging.DEBUG)
    for r in results:
        if r.refused or every:
            (log.info if r.refused else log.debug)(
                "update",
                feed=feed,
                story=r.subject,
                update=r.id,
                position=r.position,
                outcome=r.status,
                reason=r.reason,
            )
    log.info(
        "updates",
        feed=feed,
        status=status,
        count=len(results),
        appended=sum(r.status == "appended" for r in results),
    )


REPLICAS_RETRY_AFTER_S = 2
ATOMIC_ACROSS = "urn:dateline:problem:atomic-across-partitions"
FUNCTION_RETRY_AFTER_S = 5


def not_replicated(feed: str, exc: NotReplicated) -> Response[bytes]:
    """503: the server took the updates, its replicas did not confirm them in time. An id
    used again for other content is said now, not only on a retry that replicas confirm."""
    UPDATES.labels("ingest", "not-replicated").inc(len(exc.results))
    reused(log, "ingest", feed, exc.results)
    log.warning("replicas did not confirm an append; answered 503", feed=feed, error=str(exc))
    return respond(
        Problem(
            "urn:dateline:problem:not-replicated",
            "Not confirmed by replicas",
            503,
            str(exc),
            results=exc.results,
        ),
        {"Retry-After": str(REPLICAS_RETRY_AFTER_S)},
    )


MOVING_RETRY_AFTER_S = 30


def not_appended(
    feed: str, exc: NotReplicated | AppendFunctionMissing | CrossPartitionBatch | LogMoving
) -> Response[bytes]:
    """What a feed is told when its batch could not be appended as asked."""
    match exc:
        case NotReplicated():
            return not_replicated(feed, exc)
        case AppendFunctionMissing():
            return function_missing(feed, exc)
        case LogMoving():
            log.error("the log is moving or has moved; answered 503", feed=feed, error=str(exc))
            return _unavailable(f"The log {exc}", MOVING_RETRY_AFTER_S)
        case CrossPartitionBatch():
            return respond(Problem(ATOMIC_ACROSS, "Atomic batch across partitions", 422, str(exc)))


def function_missing(feed: str, exc: AppendFunctionMissing) -> Response[bytes]:
    """503: the log is sealed and its append function is not on the server (yet)."""
    log.error("cannot append; answered 503", feed=feed, error=str(exc))
    return _unavailable(str(exc), FUNCTION_RETRY_AFTER_S)


def _unavailable(why: str, retry_after_s: int) -> Response[bytes]:
    """503 for an append refused with nothing written: `why`, and when to send it again."""
    return respond(
        Problem(
            "urn:dateline:problem:unavailable",
            "Service unavailable",
            503,
            f"{why}. Nothing was written; send it again later",
        ),
        {"Retry-After": str(retry_after_s)},
    )


async def _open_log(client: aioredis.Redis, settings: Settings) -> Log:
    """The log, its partition count checked and how many replicas its appends wait for
    decided (and said)."""
    opened = Log(
        client,
        await log_keys(client, settings.prefix, settings.partitions),
        min_replicas=settings.min_replicas,
        replica_timeout_ms=settings.replica_timeout_ms,
    )
    replicas = await opened.resolve_replicas()
    log.info("appends wait for replicas", replicas=replicas, timeout_ms=opened.replica_timeout_ms)
    return opened


def create_app(settings: Settings, url: str, *, pool_size: int = POOL_SIZE) -> Litestar:
    """The ingest service. Clients are made at startup, not at import."""
    ctx = _Services()

    async def startup() -> None:
        client = await open_client(url, retry_lost=True, max_connections=pool_size)
        ctx.log_ = await _open_log(client, settings)
        ctx.credentials_ = Credentials(client, settings.prefix)
        tune_collector()
        give_back_large_blocks()  # a batch's body, up to megabytes, held per request
        counting("ingest")

    async def shutdown() -> None:
        if ctx.log_ is not None:
            await ctx.log_.close()

    async def authenticate(request: Request[Any, Any, Any]) -> Feed:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        feed = None
        if scheme.lower() == "bearer" and token:
            feed = await ctx.credentials.authenticate(token.strip())
        if feed is None:
            raise Refused(
                401,
                "unauthorized",
                "Unauthorized",
                "send Authorization: Bearer <token> with a valid, unrevoked feed token",
                {"WWW-Authenticate": 'Bearer realm="dateline"'},
            )
        return feed

    @post("/v1/updates", request_max_body_size=MAX_BATCH_BYTES + 65536, status_code=202)
    async def updates(
        request: Request[Any, Any, Any], atomic: FromQuery[bool] = False
    ) -> Response[bytes]:
        """Append CloudEvents: one result per update, in order."""
        try:
            feed = await authenticate(request)
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            headers = request.scope["headers"]
            if is_binary(content_type, headers):
                items = [binary(content_type, headers, await request.body())]
            else:
                items = split(content_type, await request.body())
        except Refused as exc:
            return respond(exc.problem, exc.headers)
        decoded, errors, forbidden = check(feed, items)
        if forbidden:
            UPDATES.labels("ingest", "forbidden").inc(len(forbidden))
            log.warning(
                "feed wrote outside its credentials", feed=feed.name, updates=len(forbidden)
            )
            return respond(
                Problem(
                    "urn:dateline:problem:forbidden",
                    "Forbidden",
                    403,
                    f"feed {feed.name!r} may not write {len(forbidden)} of these "
                    "updates; nothing was written",
                    forbidden,
                )
            )
        try:
            results = await ctx.log.append(
                [d or raw for d, raw in zip(decoded, items, strict=True)],
                atomic=atomic,
                editor=feed.editor,
            )
        except (NotReplicated, AppendFunctionMissing, CrossPartitionBatch, LogMoving) as exc:
            return not_appended(feed.name, exc)
        status = status_of(results)
        _count_and_log(feed.name, status, results)
        if status >= 400:
            title = "Invalid updates" if status == 422 else "Version conflict"
            kind = "invalid-update" if status == 422 else "conflict"
            conflicts = [
                FieldProblem(r.index, "expectedversion", r.reason or "")
                for r in results
                if r.status == "conflict"
            ]
            return respond(
                Problem(
                    f"urn:dateline:problem:{kind}",
                    title,
                    status,
                    f"{len(errors) or len(conflicts)} of {len(results)} updates "
                    "refused; the results say what happened to each",
                    errors or conflicts,
                    results,
                )
            )
        return Response(
            _encode(Accepted(results)), status_code=status, media_type="application/json"
        )

    openapi_json = b""

    @get("/v1/openapi.json", sync_to_thread=False, media_type="application/json")
    def openapi() -> Response[bytes]:
        """The OpenAPI document, generated from the msgspec Structs the service uses."""
        nonlocal openapi_json
        if not openapi_json:
            openapi_json = _encode(document())
        return Response(openapi_json, media_type="application/json")

    taken = Taken()
    return taken.learn(
        Litestar(
            route_handlers=[
                updates,
                openapi,
                *probe_routes(
                    lambda: ctx.log.redis,
                    may_scrape=ops_bearer(lambda: ctx.log.redis, settings.prefix),
                ),
            ],
            before_send=[secure_headers],
            before_request=taken.check,
            middleware=[
                refuse_control_characters,
                rate_limited(settings.rate_limit, "ingest"),
                timed("ingest"),
            ],
            openapi_config=None,  # ours is served at /v1/openapi.json, from the Structs
            on_startup=[startup],
            on_shutdown=[shutdown],
            exception_handlers=handlers("ingest"),
            debug=False,
        )
    )
