"""Log positions and cursors: what parses, what is refused, and how they order."""

from __future__ import annotations

import pytest

from dateline.domain.positions import BadPosition, Cursor, Position, stream_id


def test_positions_parse_and_print_back() -> None:
    p = Position.parse("3:1551234567890-12")
    assert (p.partition, p.id) == (3, (1551234567890, 12))
    assert str(p) == "3:1551234567890-12"
    assert Position.parse("0:9-0").id < Position.parse("0:10-0").id  # numbers, not text


@pytest.mark.parametrize(
    "text", ["", "3", "3:", "3:12", "a:1-0", "3:1-0 ", "-1:1-0", "3:18446744073709551616-0"]
)
def test_malformed_positions_are_refused_by_name(text: str) -> None:
    with pytest.raises(BadPosition, match="log position"):
        Position.parse(text)


def test_cursors_hold_one_stream_id_per_partition() -> None:
    c = Cursor.parse("1-0,0-0,5-2", 3)
    assert str(c.moved(1, (7, 1))) == "1-0,7-1,5-2"
    with pytest.raises(BadPosition, match="3 stream ids"):
        Cursor.parse("1-0,0-0", 3)
    with pytest.raises(BadPosition, match="stream id"):
        Cursor.parse("1-0,x,5-2", 3)


def test_stream_ids_past_64_bits_are_refused() -> None:
    assert stream_id("18446744073709551615-0") == (2**64 - 1, 0)
    with pytest.raises(BadPosition):
        stream_id("18446744073709551616-0")
