"""What one (already corrected) update does to a story's state, type by type.

`evolve` changes the state it is given: `story.project` and `story.advance` own
the copies and the order; this module only knows what each update means.

It changes the state's own members and containers only. A schedule item, a statement
or an expectation it changes is replaced by a changed copy, never changed in place, so
a state forked from another (`story.fork`: its containers copied but two, what they
hold shared) can be folded while the other stays as it was; and what changed is what is
no longer the same object, which the projector's commit compares by identity first.

The two a fork shares, the statements and their merge keys, only this module's
`_statement` writes. It says what it wrote and what it replaced (`Written`): the fold
in place keeps that to undo it (`story.unfold`), and the commit writes that statement
without looking over the story's others.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, Final, TypeVar

from msgspec.structs import replace

from dateline.domain.instants import iso_text
from dateline.domain.order import statement_key
from dateline.domain.state import (
    Expectation,
    Item,
    Link,
    Outcome,
    Shift,
    Statement,
    StoryState,
    When,
)
from dateline_schemas import Update, parse_duration, parse_fuzzy_date
from dateline_schemas.correction import (
    CorrectionIssued,
    Naming,
    RetractionIssued,
    RetractionLifted,
)
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

_DAY = timedelta(days=1)


def when(text: str) -> When:
    return When(text, parse_fuzzy_date(text).precision)


def _item(state: StoryState, ref: str) -> Item:
    """A copy of the item, in its place, for this update to change; or a placeholder when
    news of it sorts before its announcement."""
    found = state.schedule.get(ref)
    item = Item(item=ref, title=ref, status="scheduled") if found is None else replace(found)
    state.schedule[ref] = item
    return item


def _move(item: Item, to: When | None, shift: str | None, time: str, reason: str | None) -> None:
    previous = item.starts_at
    if previous is not None:
        item.previous_starts = (*item.previous_starts, previous)
    if to is None and shift is not None and previous is not None:
        to = _shifted(previous, shift)
    shifted = Shift(time=time, shift=shift, previous=previous, to=to, reason=reason)
    item.shifts = (*item.shifts, shifted)
    item.starts_at = to


def _shifted(start: When, shift: str) -> When:
    """The start moved by a duration, at the precision the start is known to.

    An exact start moves by the duration. A start known to the day moves by a shift of
    whole days or weeks to the day it names (`P1D` on `2020-05-30` is `2020-05-31`); a
    shift finer than a day (`-PT2H`) says more than is known of the start, which keeps
    its text. A start known to the month keeps its text: a shift is a fixed length of
    weeks, days and hours, and no number of days is a whole number of months.
    """
    delta = parse_duration(shift)
    match start.precision:
        case "exact" | "minute":
            moved = parse_fuzzy_date(start.at).start + delta
            return When(iso_text(moved), start.precision)  # offsets of whole minutes only
        case "day" if delta % _DAY == timedelta(0):
            return When((date.fromisoformat(start.at) + delta).isoformat(), "day")
        case _:
            return start


Written = tuple[str, Statement | None]
"""A statement an arm wrote: its ref, and the statement it replaced (None: a new one)."""


def evolve(state: StoryState, update: Update, time: str) -> Written | None:
    """Apply one update; `time` is its event time, formatted once by the caller. The
    statement it wrote, if it wrote one."""
    return ARMS[type(update)](state, update, time)


# An arm a type, found by the update's exact type in one lookup (no update type is
# subclassed). Not `match`: its class patterns test the arms in turn, and a test that
# fails costs an `__instancecheck__` call on msgspec's metaclass (110 ns, against 40 for
# a plain class). The newsroom mix failed about five a fold here and five in
# `summarize`: the tables took 18% off the fold alone's instructions (callgrind).


def _announced(state: StoryState, update: ScheduleAnnounced, time: str) -> None:
    d = update.data
    item = _item(state, d.item)
    item.title, item.status, item.starts_at = d.title, "scheduled", when(d.starts_at)
    item.ends_at = when(d.ends_at) if d.ends_at else None
    item.location, item.participants, item.parent = d.location, tuple(d.participants), d.parent


def _rescheduled(state: StoryState, update: ScheduleRescheduled, time: str) -> None:
    d = update.data
    item = _item(state, d.item)
    _move(item, when(d.starts_at) if d.starts_at else None, d.shift, time, d.reason)
    item.status, item.reason = "rescheduled", d.reason
    if d.ends_at:
        item.ends_at = when(d.ends_at)


def _postponed(state: StoryState, update: SchedulePostponed, time: str) -> None:
    item = _item(state, update.data.item)
    item.status, item.reason = "postponed", update.data.reason


def _cancelled(state: StoryState, update: ScheduleCancelled, time: str) -> None:
    item = _item(state, update.data.item)
    item.status, item.reason = "cancelled", update.data.reason


def _reinstated(state: StoryState, update: ScheduleReinstated, time: str) -> None:
    d = update.data
    item = _item(state, d.item)
    moved = d.starts_at is not None and (
        item.starts_at is None or when(d.starts_at) != item.starts_at
    )
    if moved and d.starts_at:
        _move(item, when(d.starts_at), None, time, d.reason)
    item.status, item.reason = ("rescheduled" if moved else "scheduled"), d.reason


def _relocated(state: StoryState, update: ScheduleRelocated, time: str) -> None:
    d = update.data
    item = _item(state, d.item)
    if item.location:
        item.previous_locations = (*item.previous_locations, item.location)
    item.location, item.reason = d.location, d.reason


def _started(state: StoryState, update: ScheduleStarted, time: str) -> None:
    item = _item(state, update.data.item)
    item.status, item.started_at = "in_progress", time
    item.started_precision = update.timeprecision


def _ended(state: StoryState, update: ScheduleEnded, time: str) -> None:
    item = _item(state, update.data.item)
    item.status, item.ended_at, item.early = "ended", time, update.data.early
    item.ended_precision = update.timeprecision


def _outcome(state: StoryState, update: OutcomeReported, time: str) -> None:
    d = update.data
    outcome = Outcome(d.outcome, d.result, d.summary, time, tuple(d.parties), tuple(d.supported_by))
    state.outcome = outcome
    state.outcome_history = (*state.outcome_history, outcome)


def _raised(state: StoryState, update: ExpectationRaised, time: str) -> None:
    d = update.data
    found = state.expectations.get(d.expectation)
    state.expectations[d.expectation] = (
        replace(found, description=d.description)
        if found
        else Expectation(d.expectation, d.description)
    )


def _resolved(state: StoryState, update: ExpectationResolved, time: str) -> None:
    d = update.data
    exp = state.expectations.get(d.expectation) or Expectation(d.expectation, "")
    state.expectations[d.expectation] = replace(exp, status=d.status, note=d.note)


def _opened(state: StoryState, update: StoryOpened, time: str) -> None:
    d = update.data
    state.title, state.place, state.summary = d.title, d.place, d.summary
    state.people, state.tags = tuple(d.people), tuple(d.tags)


def _linked(state: StoryState, update: StoryLinked, time: str) -> None:
    d = update.data
    kept = (x for x in state.links if (x.story, x.rel) != (d.story, d.rel))
    state.links = (*kept, Link(d.story, d.rel, d.note))


def _concluded(state: StoryState, update: StoryConcluded, time: str) -> None:
    state.status = "concluded"


def _reopened(state: StoryState, update: StoryReopened, time: str) -> None:
    state.status = "developing"


def _naming(state: StoryState, update: Naming, time: str) -> None:
    """Corrections and retractions: applied to their targets by `story.project`, over
    the whole set."""


def _statement(state: StoryState, update: StatementMade, time: str) -> Written:
    """The statement, or the one it merges into: the one written, and what it replaced.
    The write is the arm's last step that can fail: what it returns is all it did to the
    statements."""
    d = update.data
    key = statement_key(d.speaker, d.text, time)
    first = state.statement_keys.get(key)
    if first is not None and update.source not in state.statements[first].sources:
        # Rule 3: the same words, the same speaker, the same day, another source.
        said = state.statements[first]
        merged = replace(said, sources=(*said.sources, update.source))
        if d.statement not in merged.refs:
            merged.refs = (*merged.refs, d.statement)
            state.statement_aliases[d.statement] = first
        for name in ("speaker_role", "language", "via_interpreter", "context", "medium"):
            if getattr(d, name) is not None:
                setattr(merged, name, getattr(d, name))
        state.statements[first] = merged
        return first, said
    old = state.statements.get(d.statement)
    written = Statement(
        statement=d.statement,
        speaker=d.speaker,
        text=d.text,
        time=time,
        precision=update.timeprecision,
        speaker_role=d.speaker_role,
        language=d.language,
        via_interpreter=d.via_interpreter,
        in_reply_to=d.in_reply_to,
        context=d.context,
        medium=d.medium,
        refs=(d.statement,),
        sources=tuple(sorted({update.source, *old.sources})) if old else (update.source,),
        corrected_fields=old.corrected_fields if old else (),
        correction_notes=old.correction_notes if old else (),
    )
    state.statement_keys.setdefault(key, d.statement)
    state.statements[d.statement] = written
    return d.statement, old


Arm = Callable[[StoryState, Any, str], Written | None]
U = TypeVar("U", bound=Update)


def _arm(
    kind: type[U], apply: Callable[[StoryState, U, str], Written | None]
) -> tuple[type[Any], Arm]:
    """A type and its arm, checked by mypy to take that type."""
    return kind, apply


ARMS: Final[dict[type[Any], Arm]] = dict(
    [
        _arm(StatementMade, _statement),
        _arm(ScheduleAnnounced, _announced),
        _arm(ScheduleRescheduled, _rescheduled),
        _arm(SchedulePostponed, _postponed),
        _arm(ScheduleCancelled, _cancelled),
        _arm(ScheduleReinstated, _reinstated),
        _arm(ScheduleRelocated, _relocated),
        _arm(ScheduleStarted, _started),
        _arm(ScheduleEnded, _ended),
        _arm(OutcomeReported, _outcome),
        _arm(ExpectationRaised, _raised),
        _arm(ExpectationResolved, _resolved),
        _arm(StoryOpened, _opened),
        _arm(StoryLinked, _linked),
        _arm(StoryConcluded, _concluded),
        _arm(StoryReopened, _reopened),
        _arm(CorrectionIssued, _naming),
        _arm(RetractionIssued, _naming),
        _arm(RetractionLifted, _naming),
    ]
)
"""Every update type's arm (a unit test checks that none is missing)."""
