"""Log positions: `<partition>:<stream id>`, as the append script writes them.

Positions of one partition are totally ordered (stream ids only grow); positions of
different partitions are not comparable, so a cursor over the whole log holds one
stream id per partition.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_POSITION = re.compile(r"(\d{1,4}):(\d{1,20})-(\d{1,20})")
_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")


class BadPosition(ValueError):
    """Text that is not a log position or cursor; the message says what was expected."""


_MAX = 2**64 - 1  # each half of a Redis stream id is an unsigned 64-bit number


def stream_id(text: str) -> tuple[int, int]:
    """`1551234567890-0` as a comparable pair."""
    m = _STREAM_ID.fullmatch(text)
    if not m or int(m[1]) > _MAX or int(m[2]) > _MAX:
        raise BadPosition(f"expected a stream id such as 1551234567890-0, got {text!r}")
    return int(m[1]), int(m[2])


class Position(NamedTuple):
    partition: int
    id: tuple[int, int]

    @classmethod
    def parse(cls, text: str) -> Position:
        m = _POSITION.fullmatch(text)
        if not m or int(m[2]) > _MAX or int(m[3]) > _MAX:
            raise BadPosition(
                f"expected a log position <partition>:<stream id>, such as 3:1551234567890-0, "
                f"got {text!r}"
            )
        return cls(int(m[1]), (int(m[2]), int(m[3])))

    def __str__(self) -> str:
        return f"{self.partition}:{self.id[0]}-{self.id[1]}"


class Cursor(NamedTuple):
    """Where a reader of the whole log is: the last stream id it saw in each partition."""

    ids: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, text: str, partitions: int) -> Cursor:
        parts = text.split(",")
        if len(parts) != partitions:
            raise BadPosition(
                f"expected a cursor of {partitions} stream ids separated by commas "
                f"(one per partition), got {len(parts)}"
            )
        return cls(tuple(stream_id(p) for p in parts))

    def moved(self, partition: int, to: tuple[int, int]) -> Cursor:
        ids = list(self.ids)
        ids[partition] = to
        return Cursor(tuple(ids))

    def __str__(self) -> str:
        return ",".join(f"{ms}-{seq}" for ms, seq in self.ids)
