"""The projection's lag over the last minutes, read by the query process itself, so that
the operations page draws it the moment it opens, not only from the polls it has made
since: whoever opens it at 3 a.m. sees whether the lag is new, growing or going."""

from __future__ import annotations

import asyncio
import time
from collections import deque

import msgspec
import structlog

from dateline.query.reader import Reader
from dateline.runtime.status import LagPoint, lag_point
from dateline.store.connection import PROBE_S, UNREACHABLE, described, within

log = structlog.get_logger("dateline.query")

SPAN_S = 300.0
"""How far back the trail reaches: the chart's five minutes."""


class LagTrail:
    """The points read in the last `span_s`, oldest first."""

    def __init__(self, span_s: float = SPAN_S) -> None:
        self.span_s = span_s
        self._points: deque[LagPoint] = deque()

    def add(self, point: LagPoint) -> None:
        self._points.append(point)
        while self._points[0].at < point.at - self.span_s:
            self._points.popleft()

    def points(self, now: float) -> list[LagPoint]:
        """Those no older than the span at `now` (a trail whose reads stopped ages out)."""
        return [p for p in self._points if p.at >= now - self.span_s]


class Trail(msgspec.Struct):
    """`GET /v1/status/lag`: the points, and this process's clock when it answered, by
    which a page on another clock places them."""

    now: float
    every_s: float
    """How often the points are read; 0: not read here (`DATELINE_LAG_TRAIL_S`)."""
    points: list[LagPoint]


async def follow(reader: Reader, trail: LagTrail, every_s: float) -> None:
    """Read the lag every `every_s` into `trail`, until cancelled. A read that fails
    leaves a gap in the chart and is logged, once until a read succeeds again: a warning
    for a server that does not answer (in `PROBE_S`), an error with its traceback for
    anything else; and once it does, an info line with how long the gap was."""
    failing: float | None = None  # since when the reads fail
    while True:
        started = time.monotonic()
        try:
            models = await reader.models()
            trail.add(
                await within(PROBE_S, lag_point(reader.client, reader.keys, models, reader.views))
            )
            if failing is not None:
                log.info(
                    "lag read again for the operations page's chart",
                    gap_s=round(started - failing, 1),
                )
            failing = None
        except Exception as exc:  # the page's chart only: the process serves on
            if failing is None:
                unreachable = isinstance(exc, UNREACHABLE)
                (log.warning if unreachable else log.error)(
                    "lag not read for the operations page's chart",
                    error=described(exc),
                    exc_info=not unreachable,
                )
                failing = started
        await asyncio.sleep(max(0.0, every_s - (time.monotonic() - started)))
