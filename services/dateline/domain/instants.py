"""Instants people type: an RFC 3339 date-time with its offset, for `as_of` and ranges."""

from __future__ import annotations

from datetime import datetime


class BadInstant(ValueError):
    """Text that is not an RFC 3339 date-time with an offset; the message says so."""


def parse_instant(text: str) -> datetime:
    """`2019-02-28T14:00:00+07:00` (or `Z`): a date-time that names one instant."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadInstant(
            "expected an RFC 3339 date-time with offset (such as 2019-02-28T14:00:00+07:00), "
            f"got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        raise BadInstant(
            f"expected an RFC 3339 date-time with offset: give an offset (Z or +07:00), "
            f"got {text!r}"
        )
    return parsed
