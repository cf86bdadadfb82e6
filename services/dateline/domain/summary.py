"""One line a person can read for each update: for `dateline log` and the timeline."""

from __future__ import annotations

from dateline_schemas import Update, parse_duration
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

LINKED = " story: "
"""What comes between a link's relation and the story it names, in its summary."""
UNSEEN_LINK = "Linked story (outside your scope)"


def linked_story(type_: str, summary: str) -> str | None:
    """The story a `dateline.story.linked` update's summary names."""
    if type_ != "dateline.story.linked" or LINKED not in summary:
        return None
    return summary.rsplit(LINKED, 1)[1]


def _shift(text: str) -> str:
    """-PT2H as an editor says it: "moved up 2 h"; PT30M: "pushed back 30 min"."""
    delta = parse_duration(text)
    seconds = abs(int(delta.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    parts = [f"{n} {unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "min")) if n]
    amount = " ".join(parts) or f"{seconds} s"
    return f"moved up {amount}" if delta.total_seconds() < 0 else f"pushed back {amount}"


def _because(reason: str | None) -> str:
    return f" ({reason})" if reason else ""


def _quote(text: str, limit: int = 90) -> str:
    return f"“{text}”" if len(text) <= limit else f"“{text[: limit - 1]}…”"


def summarize(update: Update) -> str:  # noqa: PLR0911, PLR0912 - one arm per update type
    match update:
        # The commonest first (statements, then the schedule's): each arm before the one
        # that matches is an isinstance test.
        case StatementMade(data=d):
            via = " through an interpreter" if d.via_interpreter else ""
            return f"{d.speaker}{via}: {_quote(d.text)}"
        case ScheduleAnnounced(data=d):
            return f"Scheduled {d.item}: {d.title} at {d.starts_at}"
        case ScheduleRescheduled(data=d):
            when = _shift(d.shift) if d.shift else f"moved to {d.starts_at}"
            return f"Rescheduled {d.item}: {when}{_because(d.reason)}"
        case SchedulePostponed(data=d):
            return f"Postponed {d.item}{_because(d.reason)}"
        case ScheduleCancelled(data=d):
            return f"Cancelled {d.item}{_because(d.reason)}"
        case ScheduleReinstated(data=d):
            return f"Reinstated {d.item}{_because(d.reason)}"
        case ScheduleRelocated(data=d):
            return f"Relocated {d.item} to {d.location}{_because(d.reason)}"
        case ScheduleStarted(data=d):
            return f"Started {d.item}"
        case ScheduleEnded(data=d):
            return f"Ended {d.item}" + (" early" if d.early else "")
        case OutcomeReported(data=d):
            return f"Outcome: {d.result.replace('_', ' ')}: {d.summary}"
        case ExpectationRaised(data=d):
            return f"Expectation {d.expectation}: {d.description}"
        case ExpectationResolved(data=d):
            return f"Expectation {d.expectation} {d.status}" + (f": {d.note}" if d.note else "")
        case StoryOpened(data=d):
            return f"Story opened: {d.title}" + (f", {d.place}" if d.place else "")
        case StoryLinked(data=d):
            return f"Linked {d.rel.replace('_', ' ')}{LINKED}{d.story}"
        case StoryConcluded(data=d):
            return "Story concluded" + (f": {d.summary}" if d.summary else "")
        case StoryReopened(data=d):
            return "Story reopened" + _because(d.reason)
        case CorrectionIssued(data=d):
            return f"{(d.kind or 'correction').capitalize()} of {d.corrects}: {d.note}"
        case RetractionIssued(data=d):
            return f"Retraction ({d.status}) of {d.retracts}: {d.reason}"
        case RetractionLifted(data=d):
            return f"Retraction of {d.retracts} lifted"
