"""Overdue: what should have happened by now and has no report. Pure: the clock is given.

The state is a function of the updates alone, so whether an item is overdue is
asked at read time, of the server's clock: an item still `scheduled` or
`rescheduled` (no `started`, `ended`, `cancelled` or `postponed` after its last
announcement) whose start has passed.

A start known to the day is overdue the day after, and one known to the month the
month after; a date alone carries no offset, so "after" is once that day (or month)
has ended everywhere: at its end in the last time zone on Earth, UTC-12 ("anywhere on
Earth", as deadlines put it). A desk is never told an item is overdue while its day
may still be running where it takes place.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from dateline.domain.state import Item, When
from dateline_schemas import parse_fuzzy_date

OPEN = frozenset({"scheduled", "rescheduled"})
"""The statuses of an item that is still to happen."""
_LAST_ZONE = timedelta(hours=12)  # UTC-12: a day has ended everywhere 12 h after UTC's


def due_at(start: When) -> datetime:
    """When an item that starts at `start` is overdue if nothing was reported of it."""
    begins = parse_fuzzy_date(start.at).start
    match start.precision:
        case "day":  # a date alone: `begins` is its midnight, UTC
            return begins + timedelta(days=1) + _LAST_ZONE
        case "month":
            year, month = begins.year + begins.month // 12, begins.month % 12 + 1
            return datetime(year, month, 1, tzinfo=UTC) + _LAST_ZONE
        case _:
            return begins


def is_overdue(item: Item, now: datetime) -> bool:
    return item.status in OPEN and item.starts_at is not None and now >= due_at(item.starts_at)


def next_due(items: Iterable[Item], now: datetime) -> datetime | None:
    """When the next of `items` that is not overdue at `now` becomes overdue; None if
    none will by itself (what is overdue stays so until an update changes it)."""
    dues = [
        due
        for item in items
        if item.status in OPEN
        and item.starts_at is not None
        and (due := due_at(item.starts_at)) > now
    ]
    return min(dues, default=None)
