"""Corrections and retractions: news is corrected, never rewritten."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from dateline_schemas._base import Envelope, Payload
from dateline_schemas._rules import Text

_FIELD = re.compile(r"[a-z][a-z0-9_]{0,63}")
UpdateId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
RetractionStatus = Literal["withheld", "canceled"]  # IPTC ninjs pubStatus spelling


class CorrectionIssuedData(Payload, frozen=True):
    corrects: UpdateId
    changes: Annotated[dict[str, Any], msgspec.Meta(min_length=1)]
    """Payload field of the corrected update -> its corrected value."""
    note: Text
    kind: Literal["correction", "clarification"] | None = None

    def check(self) -> None:
        for field in self.changes:
            if not _FIELD.fullmatch(field):
                raise ValueError(f"changes: {field!r} is not a payload field name")


class RetractionIssuedData(Payload, frozen=True):
    retracts: UpdateId
    status: RetractionStatus
    reason: Text


class RetractionLiftedData(Payload, frozen=True):
    retracts: UpdateId


class CorrectionIssued(Envelope, frozen=True, kw_only=True, tag="dateline.correction.issued"):
    data: CorrectionIssuedData


class RetractionIssued(Envelope, frozen=True, kw_only=True, tag="dateline.retraction.issued"):
    data: RetractionIssuedData


class RetractionLifted(Envelope, frozen=True, kw_only=True, tag="dateline.retraction.lifted"):
    data: RetractionLiftedData
