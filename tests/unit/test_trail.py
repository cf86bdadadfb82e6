"""The operations page's lag trail: what it keeps, and what it says when a read fails."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from dateline.query import trail as trail_module
from dateline.query.trail import LagTrail, follow
from dateline.runtime.status import LagPoint


def point(at: float, lag: int = 0) -> LagPoint:
    return LagPoint(at=at, appended=100, lag=lag, exact=True, partitions=[("1-0", lag)])


def test_the_trail_keeps_its_span_oldest_first() -> None:
    trail = LagTrail(span_s=10)
    for at in (100, 104, 108, 112, 115):
        trail.add(point(at))
    assert [p.at for p in trail.points(115)] == [108, 112, 115]
    # Reads that stopped (a server lost): the points age out as the clock moves on.
    assert [p.at for p in trail.points(123)] == [115]
    assert trail.points(126) == []


class Failing:
    """A reader whose reads fail with `error` (`follow` asks it for its models first), then
    from the `heal`th on succeed."""

    def __init__(self, error: Exception, heal: int = 1_000) -> None:
        self.error, self.heal, self.asked, self.fifth = error, heal, 0, asyncio.Event()
        self.client = self.keys = self.views = None

    async def models(self) -> Any:
        self.asked += 1
        if self.asked == 5:
            self.fifth.set()
        if self.asked < self.heal:
            raise self.error
        return None


@pytest.mark.parametrize(
    ("error", "level"),
    [(RedisConnectionError("Connection refused"), "warning"), (KeyError("shape"), "error")],
)
async def test_a_read_that_fails_is_said_once_until_one_succeeds(
    error: Exception, level: str
) -> None:
    """A server that does not answer is a warning; anything else an error with its
    traceback; either once, not at every read, and the reads go on."""
    reader = Failing(error)
    with capture_logs() as logs:
        task = asyncio.create_task(follow(reader, LagTrail(), 0.01))  # type: ignore[arg-type]
        await asyncio.wait_for(reader.fifth.wait(), 5)
        task.cancel()
    said = [e for e in logs if e["event"] == "lag not read for the operations page's chart"]
    assert [e["log_level"] for e in said] == [level]
    assert said[0]["exc_info"] is (level == "error")
    assert type(error).__name__ in said[0]["error"]


async def test_reads_that_come_back_say_so_and_fill_the_trail_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def read(*_: object) -> LagPoint:
        return point(time.time(), 7)

    monkeypatch.setattr(trail_module, "lag_point", read)
    reader, trail = Failing(RedisConnectionError("Connection refused"), heal=3), LagTrail()
    with capture_logs() as logs:
        task = asyncio.create_task(follow(reader, trail, 0.01))  # type: ignore[arg-type]
        await asyncio.wait_for(reader.fifth.wait(), 5)
        task.cancel()
    events = [e["event"] for e in logs]
    assert events == [
        "lag not read for the operations page's chart",
        "lag read again for the operations page's chart",
    ]
    assert logs[1]["gap_s"] >= 0 and [p.lag for p in trail.points(time.time())] == [7, 7, 7]
