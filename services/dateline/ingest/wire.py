"""What ingest speaks: content types, the shape of its answers, how a body splits into updates.

Its own module so that the app and its OpenAPI document both read it, neither the other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

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


BINARY_DATA = "application/json"
"""What binary mode's body may be: the update's `data`, as JSON."""
_CE = b"ce-"
_ATTRIBUTE = re.compile(r"[a-z0-9]{1,64}")  # CloudEvents: lower-case ASCII letters and digits
_INTEGERS = frozenset({"expectedversion"})  # the contract's Integer attributes


def is_binary(content_type: str, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """CloudEvents' HTTP binding: binary mode is a request with `ce-specversion` whose
    content type is not a structured or batch one."""
    if content_type in (CE_JSON, CE_BATCH, *NDJSON):
        return False
    return any(name.lower() == b"ce-specversion" for name, _ in headers)


def binary(content_type: str, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A binary-mode update (attributes in `ce-*` headers, percent-encoded as the HTTP
    binding says; the body its data) as the structured CloudEvent the log takes."""
    if content_type != BINARY_DATA:
        raise Refused(
            415,
            "unsupported-media-type",
            "Unsupported content type",
            f"binary mode carries JSON data: send the body as {BINARY_DATA} with the "
            f"attributes in ce-* headers, or the whole event as {CE_JSON}; "
            f"not {content_type or 'none'!r}",
        )
    event: dict[str, Any] = {}
    for raw_name, raw_value in headers:
        name = raw_name.lower()
        if not name.startswith(_CE):
            continue
        attribute = name[len(_CE) :].decode("latin-1")
        header = f"ce-{attribute}"
        if not _ATTRIBUTE.fullmatch(attribute):
            raise _bad_header(
                header, "CloudEvents attribute names are 1 to 64 lower-case letters and digits"
            )
        if attribute in {"datacontenttype", "data"}:
            raise _bad_header(
                header,
                "in binary mode the data is the body and its type the Content-Type header",
            )
        if attribute in event:
            raise _bad_header(header, "given twice")
        try:
            value = unquote(raw_value.decode("utf-8"), encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise _bad_header(
                header, "not UTF-8 once percent-decoded (percent-encode its UTF-8 bytes)"
            ) from None
        number = attribute in _INTEGERS and value.isascii() and value.isdigit()
        event[attribute] = int(value) if number else value
    try:
        event["data"] = msgspec.Raw(msgspec.json.decode(body, type=msgspec.Raw))
    except msgspec.DecodeError as exc:
        raise Refused(
            400, "malformed-update", "Malformed update", f"the body is not JSON data: {exc}"
        ) from None
    event["datacontenttype"] = BINARY_DATA
    encoded = msgspec.json.encode(event)
    if len(encoded) > MAX_UPDATE_BYTES:
        raise Refused(
            413,
            "too-large",
            "Update too large",
            f"{len(encoded)} bytes, over the limit of {MAX_UPDATE_BYTES} an update",
        )
    return encoded


def _bad_header(header: str, why: str) -> Refused:
    return Refused(400, "bad-header", "Bad CloudEvents header", f"{header}: {why}")


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
    elif content_type == BINARY_DATA:  # binary mode's type, without its headers
        raise Refused(
            415,
            "unsupported-media-type",
            "Unsupported content type",
            f"{BINARY_DATA} is binary mode: the update's data as the body, its attributes "
            f"in ce-* headers, and this request has no ce-specversion header; send a whole "
            f"CloudEvent as {CE_JSON}, a batch as {CE_BATCH} or {NDJSON[0]}",
        )
    else:
        raise Refused(
            415,
            "unsupported-media-type",
            "Unsupported content type",
            f"send {CE_JSON}, {CE_BATCH} or {NDJSON[0]}, or {BINARY_DATA} with the "
            f"attributes in ce-* headers (binary mode), not {content_type or 'none'!r}",
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
