"""What the query API returns: the read models as dashboards see them.

The stored story state carries the projection's own bookkeeping (merge keys, sort
keys); `StoryView` is the public part. msgspec skips unknown fields when it decodes,
so a stored state decodes straight into it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any

import msgspec

from dateline.domain.overdue import is_overdue
from dateline.domain.state import Entry, Hidden, Item, PublicState, StoryState
from dateline.store.readmodels import IndexEntry, ScheduleEntry, SpokenEntry

__all__ = [
    "BoardEntry",
    "BoardPage",
    "Entry",
    "HeldEvent",
    "IndexEntry",
    "ItemView",
    "ListedStory",
    "ScheduleEntry",
    "SpokenEntry",
    "SpokenPage",
    "StoryPage",
    "StoryView",
    "TimelinePage",
    "UpdateEvent",
]


class Stamp(msgspec.Struct):
    """What a stored story state says of where it is, decoded without the rest of it."""

    version: int = 0
    position: str | None = None


_stamp = msgspec.json.Decoder(Stamp)


def stamp_of(raw: bytes | None) -> Stamp:
    return _stamp.decode(raw) if raw else Stamp()


PARKED_AT = (
    "The log position of the update of this story that the projector could not apply and "
    "parked, if one is parked: the state shows the story without it and without its later "
    "updates, which wait behind it, until ops redrive it (`dateline dlq redrive`). "
    "Always null with `as_of` or `at_version`, which fold the story's history here."
)


OVERDUE = (
    "True when the item should have happened by now and nothing says it did: still "
    "scheduled or rescheduled, and its start has passed by the server's clock at the time "
    "of the read (a start known to the day: once that day has ended everywhere; to the "
    "month: once the month has). With `as_of`, by that time."
)


class ItemView(Item):
    """A schedule item as the API shows it: with whether it is overdue now."""

    overdue: Annotated[bool, msgspec.Meta(description=OVERDUE)] = False


class StoryView(PublicState):
    """A story as the API shows it: its public state, and where it is parked."""

    # The items as the API shows them: mypy holds dict invariant, msgspec decodes this type.
    schedule: dict[str, ItemView] = {}  # type: ignore[assignment]  # noqa: RUF012
    parked_at: Annotated[str | None, msgspec.Meta(description=PARKED_AT)] = None


_stored = msgspec.json.Decoder(StoryView)


def stored_view(raw: bytes, parked_at: str | None, now: datetime) -> StoryView:
    """The public part of a stored state (with its statements), where it is parked, and
    which of its items are overdue at `now`."""
    view = _stored.decode(raw)
    view.parked_at = parked_at
    return mark_overdue(view, now)


def view_of(state: StoryState, now: datetime) -> StoryView:
    """The public part of a state folded in this process (`as_of`, `dateline story`)."""
    return mark_overdue(msgspec.convert(msgspec.to_builtins(state), StoryView), now)


def mark_overdue(view: StoryView, now: datetime) -> StoryView:
    for item in view.schedule.values():
        item.overdue = is_overdue(item, now)
    return view


class ListedStory(IndexEntry):
    """A story of the index, as lists show it."""

    parked_at: Annotated[str | None, msgspec.Meta(description=PARKED_AT)] = None
    overdue: Annotated[
        bool,
        msgspec.Meta(description="True when an item of the story is overdue (`ItemView`)."),
    ] = False


class HeldEvent(msgspec.Struct):
    """A story parked (`parked_at`: the update that parked it) or released (null), with
    its index entry as it is now: a redrive may have applied its parked updates."""

    story: str
    parked_at: str | None
    entry: IndexEntry | None


class StoryPage(msgspec.Struct):
    """The story index, with the projection version it was read from."""

    projection: str
    items: list[ListedStory]
    next: Annotated[
        str | None,
        msgspec.Meta(
            description="Give as `after` for the page that follows this one; null when "
            "this page is the last."
        ),
    ] = None


class TimelinePage(msgspec.Struct):
    projection: str
    items: list[Entry]


_NEXT_ENTRIES = msgspec.Meta(
    description="Give as `after` for the page that follows this one; null when this page "
    "is the last, and when no `limit` was given."
)


class SpokenPage(msgspec.Struct):
    projection: str
    items: list[SpokenEntry]
    next: Annotated[str | None, _NEXT_ENTRIES] = None


class BoardEntry(msgspec.Struct):
    """An item of the schedule board: the story it belongs to, and the item."""

    story: str
    item: ItemView


class BoardPage(msgspec.Struct):
    projection: str
    items: list[BoardEntry]
    next: Annotated[str | None, _NEXT_ENTRIES] = None


class UnreadableEvent(msgspec.Struct):
    """A log entry that is no valid update (written around the append script): the index
    stream names it and goes on; the projector parks it (`dateline dlq show`)."""

    position: str
    error: str


class UpdateEvent(msgspec.Struct, omit_defaults=True):
    """A live push for one update of the log, in log order."""

    story: str
    version: int
    position: str
    id: str
    type: str
    summary: str
    record: dict[str, Any] | None = None
    """The update as stored (story streams only)."""
    entry: IndexEntry | None = None
    """The story's index entry as it is now (index stream only)."""
    parked: bool = False
    """True when the projection has not applied this update: it failed and is parked,
    or waits behind a parked update of its story (index stream only; a story stream sends
    only what its read model holds). `dateline dlq redrive` applies it later."""
    recalled: bool = False
    """Recalled as erroneous since, shown without its content to a `reader` (a stream
    resumed from before the recall)."""


_record = msgspec.json.Decoder(dict[str, Any])
_encode = msgspec.json.Encoder().encode
_OUT_OF_A_RECALL = ("data", "datacontenttype", "dataschema")


def redact(records: list[bytes], gone: dict[tuple[str, str], Hidden]) -> list[bytes]:
    """The stored records with those in `gone` as recalled: the envelope, `recalled:
    true` and `recalledby` (the retraction's id), no content."""
    if not gone:
        return records
    out = []
    for raw in records:
        record = _record.decode(raw)
        hidden = gone.get((record.get("source", ""), record.get("id", "")))
        if hidden is None:
            out.append(raw)
            continue
        stub = {k: v for k, v in record.items() if k not in _OUT_OF_A_RECALL}
        stub |= {"recalled": True, "recalledby": hidden.retraction}
        out.append(_encode(stub))
    return out


def etag(body: bytes) -> str:
    """A strong ETag of an answer's bytes."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
