"""The operations page's lag trail: what it keeps, and what it says when a read fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

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
    """A reader whose reads fail with `error`: `follow` asks it for its models first."""

    def __init__(self, error: Exception) -> None:
        self.error, self.asked, self.fifth = error, 0, asyncio.Event()

    async def models(self) -> Any:
        self.asked += 1
        if self.asked == 5:
            self.fifth.set()
        raise self.error


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
