"""The story read model: what the desk knows about one story, as msgspec Structs.

Every Struct here is `gc=False`: the collector neither tracks nor walks them. A state is
a tree (the fold builds it, decoding makes it, nothing points back up), so it holds no
cycle for the collector to find (`tests/unit/test_untracked.py`). Tracked, the states a
projector keeps decoded were most of what its full collections walked (9,865 objects
against 6,946; a full collection 3.8 to 8.5 ms against 1.9 to 2.2), and the projector
catching up spent 4 to 7% more CPU an update (`docs/projections.md`).

What a state holds in sequence is a tuple, save its timeline (appended to by every
update): the collector stops tracking a tuple that holds nothing it tracks, and a dict
that holds nothing it tracks is never tracked, so a decoded state gives it one list to
walk. A full collection over 2,000 states kept decoded took 1.1 ms, against 32.6 ms
while those were lists; so a projector keeps thousands decoded (`projector/commit.py`'s
warm tier), and `fork` copies one list and five dicts.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import msgspec

ItemStatus = Literal["scheduled", "rescheduled", "postponed", "cancelled", "in_progress", "ended"]
StoryStatus = Literal["developing", "concluded"]
STORY_STATUSES: tuple[StoryStatus, ...] = get_args(StoryStatus)


class When(msgspec.Struct, frozen=True, gc=False):
    """A date as the source knew it: the text given and its precision."""

    at: str
    precision: str


class Shift(msgspec.Struct, frozen=True, gc=False):
    """One move of an item's start: by a duration, or to a new date."""

    time: str
    shift: str | None
    previous: When | None
    to: When | None
    reason: str | None = None


class Item(msgspec.Struct, gc=False):
    item: str
    title: str
    status: ItemStatus
    starts_at: When | None = None
    """None while only later news of an item has arrived, not its announcement."""
    ends_at: When | None = None
    previous_starts: tuple[When, ...] = ()
    shifts: tuple[Shift, ...] = ()
    location: str | None = None
    previous_locations: tuple[str, ...] = ()
    participants: tuple[str, ...] = ()
    parent: str | None = None
    reason: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    early: bool | None = None
    started_precision: str | None = None
    """How much of `started_at` is known (the update's `timeprecision`)."""
    ended_precision: str | None = None
    """How much of `ended_at` is known."""


class Statement(msgspec.Struct, gc=False):
    statement: str
    speaker: str
    text: str
    time: str
    precision: str
    speaker_role: str | None = None
    language: str | None = None
    via_interpreter: bool | None = None
    in_reply_to: str | None = None
    context: str | None = None
    medium: str | None = None
    refs: tuple[str, ...] = ()
    """Every ref this statement was published under (rule 3 merges duplicates)."""
    sources: tuple[str, ...] = ()
    corrected_fields: tuple[str, ...] = ()
    correction_notes: tuple[str, ...] = ()


class Outcome(msgspec.Struct, gc=False):
    outcome: str
    result: str
    summary: str
    time: str
    parties: tuple[str, ...] = ()
    supported_by: tuple[str, ...] = ()


class Expectation(msgspec.Struct, gc=False):
    expectation: str
    description: str
    status: Literal["pending", "met", "unmet", "partly"] = "pending"
    note: str | None = None


class Link(msgspec.Struct, gc=False):
    story: str
    rel: str
    note: str | None = None


class CorrectionNote(msgspec.Struct, gc=False):
    id: str
    corrects: str
    note: str
    time: str
    kind: str = "correction"
    fields: tuple[str, ...] = ()
    applied: bool = True
    """False while the corrected update has not arrived (held), or if its change was invalid."""
    problem: str | None = None
    """Why a change that arrived could not be applied."""
    source: str = ""
    """Who issued the correction (its `source`)."""
    target_source: str = ""
    """The `source` of the update it corrects: its own, unless `target_source` said
    another (rule 5)."""


class Hidden(msgspec.Struct, gc=False):
    """An update taken out of the state by a retraction; the log keeps it."""

    id: str
    status: Literal["withheld", "canceled"]
    reason: str
    retraction: str
    source: str = ""
    """The `source` of the update taken out (ids are unique per source)."""


class Entry(msgspec.Struct, gc=False):
    """One line of the timeline."""

    version: int
    id: str
    type: str
    time: str
    precision: str
    summary: str
    source: str


class PublicState(msgspec.Struct, gc=False):
    """What a story shows anyone: its state without the projection's bookkeeping."""

    id: str
    status: StoryStatus = "developing"
    title: str | None = None
    place: str | None = None
    summary: str | None = None
    people: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    version: int = 0
    """The highest story version folded in: every update up to it is applied."""
    position: str | None = None
    recordedtime: str | None = None
    last_time: str | None = None
    """The event time of the update that sorts last."""
    schedule: dict[str, Item] = {}
    statements: dict[str, Statement] = {}
    outcome: Outcome | None = None
    outcome_history: tuple[Outcome, ...] = ()
    expectations: dict[str, Expectation] = {}
    links: tuple[Link, ...] = ()
    corrections: tuple[CorrectionNote, ...] = ()
    hidden: tuple[Hidden, ...] = ()


class StoryState(PublicState, gc=False):
    """A story's state as the projection folds it: the public part, its timeline, and
    the bookkeeping that lets an update be folded in place."""

    timeline: list[Entry] = []
    statement_keys: dict[str, str] = {}
    """Rule 3 bookkeeping: merge key (speaker, text, day) -> the statement's first ref."""
    statement_aliases: dict[str, str] = {}
    """Any ref a merged statement was also published under -> its first ref."""
    order_key: tuple[Any, ...] = ()
    """Sort key of the last update folded in; an update that sorts after it can be applied
    incrementally, any other needs a refold."""
