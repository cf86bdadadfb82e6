"""Corrections and retractions: news is corrected, never rewritten."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from dateline_schemas._base import Envelope, Payload
from dateline_schemas._rules import CE_STRING, Text, string_problem

_FIELD = re.compile(r"[a-z][a-z0-9_]{0,63}")
UpdateId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
TargetSource = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=512,
        description="Rule 5: the `source` of the update named, when it is not this "
        "update's own; only a feed granted the editor right may name another source's.",
    ),
    CE_STRING,
]
RetractionStatus = Literal["withheld", "canceled"]  # IPTC ninjs pubStatus spelling


class CorrectionIssuedData(Payload, frozen=True):
    corrects: UpdateId
    changes: Annotated[dict[str, Any], msgspec.Meta(min_length=1)]
    """Payload field of the corrected update -> its corrected value."""
    note: Text
    kind: Literal["correction", "clarification"] | None = None
    target_source: TargetSource | None = None

    def check(self) -> None:
        for field in self.changes:
            if not _FIELD.fullmatch(field):
                raise ValueError(f"changes: {field!r} is not a payload field name")
        for field, value in self.changes.items():
            for text in _strings(value):
                if (why := string_problem(text)) is not None:
                    raise ValueError(f"changes.{field}: {why}")


def _strings(value: Any) -> list[str]:
    """Every string in a corrected value (a list or object may hold some)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    return []


class RetractionIssuedData(Payload, frozen=True):
    retracts: UpdateId
    status: RetractionStatus
    reason: Text
    target_source: TargetSource | None = None


class RetractionLiftedData(Payload, frozen=True):
    retracts: UpdateId
    target_source: TargetSource | None = None


class CorrectionIssued(Envelope, frozen=True, kw_only=True, tag="dateline.correction.issued"):
    data: CorrectionIssuedData


class RetractionIssued(Envelope, frozen=True, kw_only=True, tag="dateline.retraction.issued"):
    data: RetractionIssuedData


class RetractionLifted(Envelope, frozen=True, kw_only=True, tag="dateline.retraction.lifted"):
    data: RetractionLiftedData


Naming = CorrectionIssued | RetractionIssued | RetractionLifted
"""The updates that name another update: corrections, retractions, lifts."""


def target_of(update: Naming) -> tuple[str, str]:
    """(source, id) of the update this one names: its own source's, unless
    `target_source` says another (rule 5)."""
    d = update.data
    named = d.corrects if isinstance(d, CorrectionIssuedData) else d.retracts
    return (d.target_source or update.source, named)


def names_another_source(update: object) -> str | None:
    """The other source whose update this correction or retraction names (rule 5)."""
    if not isinstance(update, CorrectionIssued | RetractionIssued | RetractionLifted):
        return None
    source, _ = target_of(update)
    return source if source != update.source else None
