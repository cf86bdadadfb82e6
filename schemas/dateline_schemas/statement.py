"""dateline.statement.made: what someone said, verbatim (schema.org Quotation)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from dateline_schemas._base import Envelope, Payload
from dateline_schemas._rules import Name, Ref, Text

Medium = Literal["remarks", "press_release", "social", "interview", "testimony", "letter"]
Language = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*$",
        description="BCP 47 language tag, e.g. en or ko-KP.",
    ),
]


class StatementMadeData(Payload, frozen=True):
    statement: Ref
    speaker: Name
    text: Text
    speaker_role: Name | None = None
    language: Language | None = None
    via_interpreter: bool | None = None
    in_reply_to: Ref | None = None
    context: Text | None = None
    medium: Medium | None = None


class StatementMade(Envelope, frozen=True, kw_only=True, tag="dateline.statement.made"):
    data: StatementMadeData
