"""Query parameters the HTTP services share, parsed once, refused with the parameter named."""

from __future__ import annotations

from datetime import datetime

from dateline.domain.instants import BadInstant, parse_instant
from dateline.domain.positions import BadPosition, Cursor, Position
from dateline.web.problems import Refused


def bad_parameter(name: str, why: str) -> Refused:
    return Refused(400, "bad-parameter", "Bad parameter", f"{name}: {why}")


def instant(value: str | None, name: str) -> datetime | None:
    """An RFC 3339 date-time with offset, or None when the parameter was not given."""
    if value is None:
        return None
    try:
        return parse_instant(value)
    except BadInstant as exc:
        raise bad_parameter(name, str(exc)) from None


def position(value: str, name: str, partitions: int | None = None) -> Position:
    """`value` as a log position, refused by `name` if it is none, or if it names a
    partition past the log's `partitions` (given): no update was ever there."""
    try:
        found = Position.parse(value)
    except BadPosition as exc:
        raise bad_parameter(name, str(exc)) from None
    if partitions is not None and found.partition >= partitions:
        raise bad_parameter(
            name,
            f"{value}: no partition {found.partition} (the log has {partitions}, "
            f"0 to {partitions - 1}); expected a position a write was answered with",
        )
    return found


def cursor(value: str, name: str, partitions: int) -> Cursor:
    try:
        return Cursor.parse(value, partitions)
    except BadPosition as exc:
        raise bad_parameter(name, str(exc)) from None
