"""One line a person can read for each update: for `dateline log` and the timeline."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final, TypeVar

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


@functools.lru_cache(maxsize=1024)
def _shift(text: str) -> str:
    """-PT2H as an editor says it: "moved up 2 h"; PT30M: "pushed back 30 min".

    Cached, as `parse_duration` is: shifts are few, and a line costs 1.5 us to make."""
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


def summarize(update: Update) -> str:
    """The update's line, by its exact type in one lookup: not `match`, whose arms would
    be tested in turn, each failing test an `__instancecheck__` call (`evolve.ARMS`)."""
    return LINES[type(update)](update)


def _statement(u: StatementMade) -> str:
    d = u.data
    via = " through an interpreter" if d.via_interpreter else ""
    return f"{d.speaker}{via}: {_quote(d.text)}"


def _rescheduled(u: ScheduleRescheduled) -> str:
    d = u.data
    when = _shift(d.shift) if d.shift else f"moved to {d.starts_at}"
    return f"Rescheduled {d.item}: {when}{_because(d.reason)}"


def _resolved(u: ExpectationResolved) -> str:
    d = u.data
    return f"Expectation {d.expectation} {d.status}" + (f": {d.note}" if d.note else "")


Line = Callable[[Any], str]
U = TypeVar("U", bound=Update)


def _line(kind: type[U], line: Callable[[U], str]) -> tuple[type[Any], Line]:
    """A type and its line, checked by mypy to take that type."""
    return kind, line


LINES: Final[dict[type[Any], Line]] = dict(
    [
        _line(StatementMade, _statement),
        _line(
            ScheduleAnnounced,
            lambda u: f"Scheduled {u.data.item}: {u.data.title} at {u.data.starts_at}",
        ),
        _line(ScheduleRescheduled, _rescheduled),
        _line(SchedulePostponed, lambda u: f"Postponed {u.data.item}{_because(u.data.reason)}"),
        _line(ScheduleCancelled, lambda u: f"Cancelled {u.data.item}{_because(u.data.reason)}"),
        _line(ScheduleReinstated, lambda u: f"Reinstated {u.data.item}{_because(u.data.reason)}"),
        _line(
            ScheduleRelocated,
            lambda u: f"Relocated {u.data.item} to {u.data.location}{_because(u.data.reason)}",
        ),
        _line(ScheduleStarted, lambda u: f"Started {u.data.item}"),
        _line(ScheduleEnded, lambda u: f"Ended {u.data.item}" + (" early" if u.data.early else "")),
        _line(
            OutcomeReported,
            lambda u: f"Outcome: {u.data.result.replace('_', ' ')}: {u.data.summary}",
        ),
        _line(
            ExpectationRaised, lambda u: f"Expectation {u.data.expectation}: {u.data.description}"
        ),
        _line(ExpectationResolved, _resolved),
        _line(
            StoryOpened,
            lambda u: (
                f"Story opened: {u.data.title}" + (f", {u.data.place}" if u.data.place else "")
            ),
        ),
        _line(
            StoryLinked, lambda u: f"Linked {u.data.rel.replace('_', ' ')}{LINKED}{u.data.story}"
        ),
        _line(
            StoryConcluded,
            lambda u: "Story concluded" + (f": {u.data.summary}" if u.data.summary else ""),
        ),
        _line(StoryReopened, lambda u: "Story reopened" + _because(u.data.reason)),
        _line(
            CorrectionIssued,
            lambda u: (
                f"{(u.data.kind or 'correction').capitalize()} of {u.data.corrects}: {u.data.note}"
            ),
        ),
        _line(
            RetractionIssued,
            lambda u: f"Retraction ({u.data.status}) of {u.data.retracts}: {u.data.reason}",
        ),
        _line(RetractionLifted, lambda u: f"Retraction of {u.data.retracts} lifted"),
    ]
)
"""Every update type's line (a unit test checks that none is missing)."""
