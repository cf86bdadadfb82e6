"""What a waiter reads off its `XREAD` (`runtime/wakes.py`), in either protocol."""

from __future__ import annotations

from typing import Any

import pytest

from dateline.runtime.wakes import _first_id

ENTRY = [b"1551234567890-3", [b"__data__", b"{}"]]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ([[b"log", [ENTRY]]], "1551234567890-3"),  # RESP2: a list of (stream, entries)
        ({b"log": [ENTRY]}, "1551234567890-3"),  # RESP3: a map
        ({"log": [["1551234567890-3", {"__data__": "{}"}]]}, "1551234567890-3"),  # decoded
        (None, None),  # the block ran out
        ([], None),
        ({b"log": []}, None),
    ],
)
def test_the_first_entry_of_a_waiters_read(reply: Any, expected: str | None) -> None:
    assert _first_id(reply) == expected
