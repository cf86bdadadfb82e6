"""`POST /v1/updates`: CloudEvents in, one result per update out, nothing lost either way.

Content types: application/cloudevents+json (one update),
application/cloudevents-batch+json (a JSON array), application/x-ndjson (a line each).
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
import structlog
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromQuery

from dateline.config import Settings
from dateline.connection import connect
from dateline.heap import tune_collector
from dateline.http_errors import unhandled
from dateline.http_probes import probe_routes
from dateline.ingest.credentials import Credentials, Feed, refusal
from dateline.keys import Keys
from dateline.log import AppendResult, Log
from dateline.metrics import UPDATES, timed
from dateline_schemas import (
    MAX_BATCH_BYTES,
    MAX_BATCH_UPDATES,
    MAX_UPDATE_BYTES,
    Decoded,
    InvalidUpdate,
    decode_update,
)

CE_JSON = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"
NDJSON = ("application/x-ndjson", "application/ndjson")
PROBLEM = "application/problem+json"
log = structlog.get_logger("dateline.ingest")
_encode = msgspec.json.Encoder().encode
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


class FieldProblem(msgspec.Struct, frozen=True):
    index: int
    field: str
    detail: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """RFC 9457 problem details, with what happened to each update."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] = []
    results: list[AppendResult] = []


class Accepted(msgspec.Struct, frozen=True):
    results: list[AppendResult]


class Refused(Exception):
    def __init__(
        self, status: int, kind: str, title: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(f"urn:dateline:problem:{kind}", title, status, detail)
        self.headers = headers or {}


def problem(p: Problem, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(_encode(p), status_code=p.status, media_type=PROBLEM, headers=headers)


def split(content_type: str, body: bytes) -> list[bytes]:
    """The updates in a request body, by its content type (size limits checked here)."""
    if content_type == CE_JSON:
        if len(body) > MAX_UPDATE_BYTES:
            raise Refused(
                413,
                "too-large",
                "Update too large",
                f"{len(body)} bytes, over the limit of {MAX_UPDATE_BYTES} an update",
            )
        return [body]
    if content_type == CE_BATCH:
        try:
            items = [bytes(r) for r in _raw_list.decode(body)]
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            raise Refused(
                400,
                "malformed-batch",
                "Malformed batch",
                f"expected a JSON array of CloudEvents: {exc}",
            ) from None
    elif content_type in NDJSON:
        items = [line.strip() for line in body.split(b"\n") if line.strip()]
    else:
        raise Refused(
            415,
            "unsupported-media-type",
            "Unsupported content type",
            f"send {CE_JSON}, {CE_BATCH} or {NDJSON[0]}, not {content_type or 'none'!r}",
        )
    if not items:
        raise Refused(400, "empty-batch", "Empty batch", "the body holds no update")
    if len(items) > MAX_BATCH_UPDATES:
        raise Refused(
            413,
            "too-large",
            "Batch too large",
            f"{len(items)} updates, over the limit of {MAX_BATCH_UPDATES} a batch",
        )
    return items


def status_of(results: list[AppendResult]) -> int:
    statuses = {r.status for r in results}
    if "invalid" in statuses:
        return 422
    if "conflict" in statuses:
        return 409
    return 202 if "appended" in statuses else 200


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
        try:
            d = decode_update(raw)
        except InvalidUpdate as exc:
            decoded.append(None)
            errors.append(FieldProblem(i, exc.problem.field, exc.problem.message))
            continue
        decoded.append(d)
        if (why := refusal(feed, d.update)) is not None:
            field, _, detail = why.partition(": ")
            forbidden.append(FieldProblem(i, field, detail))
    return decoded, errors, forbidden


def create_app(settings: Settings, url: str) -> Litestar:
    """The ingest service. Clients are made at startup, not at import."""
    ctx = _Services()

    async def startup() -> None:
        client = connect(url)
        ctx.log_ = Log(client, Keys(settings.prefix, settings.partitions))
        await ctx.log_.check_partitions()
        ctx.credentials_ = Credentials(client, settings.prefix)
        tune_collector()

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
            items = split(content_type, await request.body())
        except Refused as exc:
            return problem(exc.problem, exc.headers)
        decoded, errors, forbidden = check(feed, items)
        if forbidden:
            UPDATES.labels("ingest", "forbidden").inc(len(forbidden))
            log.warning(
                "feed wrote outside its credentials", feed=feed.name, updates=len(forbidden)
            )
            return problem(
                Problem(
                    "urn:dateline:problem:forbidden",
                    "Forbidden",
                    403,
                    f"feed {feed.name!r} may not write {len(forbidden)} of these "
                    "updates; nothing was written",
                    forbidden,
                )
            )
        results = await ctx.log.append(
            [d or raw for d, raw in zip(decoded, items, strict=True)], atomic=atomic
        )
        status = status_of(results)
        for outcome, count in Counter(r.status for r in results).items():
            UPDATES.labels("ingest", outcome).inc(count)
        # A line per update with story, id and position bound, to grep a story's way in:
        # refused ones always, accepted ones at debug level.
        every = log.bind().is_enabled_for(logging.DEBUG)
        for r in results:
            if r.refused or every:
                (log.info if r.refused else log.debug)(
                    "update",
                    feed=feed.name,
                    story=r.subject,
                    update=r.id,
                    position=r.position,
                    outcome=r.status,
                    reason=r.reason,
                )
        log.info(
            "updates",
            feed=feed.name,
            status=status,
            count=len(results),
            appended=sum(r.status == "appended" for r in results),
        )
        if status >= 400:
            title = "Invalid updates" if status == 422 else "Version conflict"
            kind = "invalid-update" if status == 422 else "conflict"
            conflicts = [
                FieldProblem(r.index, "expectedversion", r.reason or "")
                for r in results
                if r.status == "conflict"
            ]
            return problem(
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
            from dateline.ingest.openapi import document  # noqa: PLC0415 - imports this module

            openapi_json = _encode(document())
        return Response(openapi_json, media_type="application/json")

    def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
        kind = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
            exc.status_code, "http-error"
        )
        body = Problem(
            f"urn:dateline:problem:{kind}", str(exc.detail), exc.status_code, str(exc.detail)
        )
        return problem(body, dict(exc.headers or {}))  # e.g. Allow on a 405 (RFC 9110)

    return Litestar(
        route_handlers=[updates, openapi, *probe_routes(lambda: ctx.log.redis)],
        middleware=[timed("ingest")],
        openapi_config=None,  # ours is served at /v1/openapi.json, from the Structs
        on_startup=[startup],
        on_shutdown=[shutdown],
        exception_handlers={HTTPException: http_error, Exception: unhandled("ingest")},
        debug=False,
    )
