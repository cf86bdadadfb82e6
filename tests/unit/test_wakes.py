"""What a waiter reads off its `XREAD` (`runtime/wakes.py`), in either protocol, and how it
counts a partition it cannot watch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from dateline.runtime import wakes as wakes_module
from dateline.runtime.wakes import Wakes, _first_id

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


class _Node:
    """A stand-in for the cluster client: an `XREAD` that fails while `refusing`, and
    otherwise answers one entry past anything."""

    def __init__(self) -> None:
        self.refusing = True

    async def xread(self, streams: dict[str, str], count: int, block: int) -> Any:
        if self.refusing:
            raise ConnectionError("node lost")
        return {b"log": [[b"9-0", [b"__data__", b"{}"]]]}


def _polled(group: str) -> float:
    return REGISTRY.get_sample_value("dateline_partitions_polled", {"group": group}) or 0.0


async def test_a_partition_counted_polled_is_counted_back_by_the_waiter_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failing waiter whose runner stopped looking ends (`LEFT_S`) still counted; the
    waiter that takes over, once its read succeeds, must count the partition back."""
    monkeypatch.setattr(wakes_module, "LEFT_S", 0.2)
    node, group = _Node(), "unit-left-while-failing"
    wakes = Wakes(node, group, lambda _: "1-0")  # type: ignore[arg-type]
    try:
        wakes.follow(["log"])
        assert await wakes.wait(0.1) == set()  # its waiter's reads fail meanwhile
        assert _polled(group) == 1
        first = wakes._tasks["log"]
        await asyncio.wait_for(first, 5)  # nobody looks: it leaves, still counted
        assert _polled(group) == 1
        node.refusing = False
        wakes.follow(["log"])  # the runner looks again: a new waiter
        assert await wakes.wait(5) == {"log"}
        assert _polled(group) == 0
    finally:
        await wakes.close()
