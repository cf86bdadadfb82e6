"""dateline.outcome.reported and dateline.expectation.*: how it ended, against what was hoped."""

from __future__ import annotations

from typing import Literal

from dateline_schemas._base import Envelope, Payload
from dateline_schemas._rules import Name, Ref, Text

Result = Literal[
    "agreement_signed",
    "agreement_reached",
    "no_agreement",
    "talks_continue",
    "talks_collapsed",
    "other",
]
ExpectationStatus = Literal["met", "unmet", "partly"]


class OutcomeReportedData(Payload, frozen=True):
    outcome: Ref
    result: Result
    summary: Text
    parties: list[Name] = []
    supported_by: list[Ref] = []


class ExpectationRaisedData(Payload, frozen=True):
    expectation: Ref
    description: Text


class ExpectationResolvedData(Payload, frozen=True):
    expectation: Ref
    status: ExpectationStatus
    note: Text | None = None


class OutcomeReported(Envelope, frozen=True, kw_only=True, tag="dateline.outcome.reported"):
    data: OutcomeReportedData


class ExpectationRaised(Envelope, frozen=True, kw_only=True, tag="dateline.expectation.raised"):
    data: ExpectationRaisedData


class ExpectationResolved(Envelope, frozen=True, kw_only=True, tag="dateline.expectation.resolved"):
    data: ExpectationResolvedData
