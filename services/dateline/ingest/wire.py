"""What ingest speaks: content types, the shape of its answers, how a body splits into updates.

Its own module so that the app and its OpenAPI document both read it, neither the other.
"""

from __future__ import annotations

import msgspec

from dateline.store.log import AppendResult
from dateline.web import problems
from dateline.web.problems import Refused
from dateline_schemas import MAX_BATCH_UPDATES, MAX_UPDATE_BYTES

CE_JSON = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"
NDJSON = ("application/x-ndjson", "application/ndjson")
PROBLEM = problems.PROBLEM
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


class FieldProblem(msgspec.Struct, frozen=True):
    index: int
    field: str
    detail: str


class Problem(problems.Problem, frozen=True, omit_defaults=True):
    """RFC 9457 problem details, with what happened to each update."""

    errors: list[FieldProblem] = []  # noqa: RUF012 - msgspec copies it per instance
    results: list[AppendResult] = []  # noqa: RUF012 - likewise


class Accepted(msgspec.Struct, frozen=True):
    results: list[AppendResult]


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
