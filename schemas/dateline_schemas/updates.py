"""The tagged union of every update type, keyed by its CloudEvents `type`."""

from __future__ import annotations

from typing import Final

from dateline_schemas._base import Envelope
from dateline_schemas.correction import CorrectionIssued, RetractionIssued, RetractionLifted
from dateline_schemas.outcome import ExpectationRaised, ExpectationResolved, OutcomeReported
from dateline_schemas.schedule import (
    ScheduleAnnounced,
    ScheduleCancelled,
    ScheduleEnded,
    SchedulePostponed,
    ScheduleReinstated,
    ScheduleRelocated,
    ScheduleRescheduled,
    ScheduleStarted,
)
from dateline_schemas.statement import StatementMade
from dateline_schemas.story import StoryConcluded, StoryLinked, StoryOpened, StoryReopened

Update = (
    StoryOpened
    | StoryLinked
    | StoryConcluded
    | StoryReopened
    | ScheduleAnnounced
    | ScheduleRescheduled
    | SchedulePostponed
    | ScheduleCancelled
    | ScheduleReinstated
    | ScheduleRelocated
    | ScheduleStarted
    | ScheduleEnded
    | StatementMade
    | OutcomeReported
    | ExpectationRaised
    | ExpectationResolved
    | CorrectionIssued
    | RetractionIssued
    | RetractionLifted
)

UPDATE_CLASSES: Final[tuple[type[Envelope], ...]] = Update.__args__
TYPES: Final[dict[str, type[Envelope]]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in UPDATE_CLASSES
}
ENVELOPE_FIELDS: Final[frozenset[str]] = frozenset({"type", *Envelope.__struct_fields__, "data"})
LOG_FIELDS: Final[tuple[str, ...]] = ("version", "position", "recordedtime", "editor")
