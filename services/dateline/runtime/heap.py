"""Short full garbage collections in long-running services."""

from __future__ import annotations

import gc
import time
from typing import Any

import structlog

from dateline.runtime.metrics import GC_SECONDS

log = structlog.get_logger("dateline.runtime.heap")
LONG_PAUSE_S = 0.02
"""A collection this long is logged: the event loop stood still for all of it."""
YOUNG = 10_000
"""Allocations (less frees) between two collections of the youngest generation."""


def tune_collector() -> None:
    """Freeze what is alive once a service has started; collect the young less often.

    Modules, classes and the app live as long as the process, so a collection never
    frees them, yet every full collection walked them all: about 10 ms of CPU a pass,
    stretched to 30 to 120 ms while five processes share two cores, with the event
    loop stopped throughout. Under load the projector ran one every few seconds, and
    they were the p99 of the latency bench (`bench/readside.py`). What is made later
    is collected as before.

    A batch makes and drops tens of thousands of objects (decoded updates and states),
    which a reference count frees, not the collector; at the default of a young
    collection every 700 allocations the projector spent about a tenth of its CPU in
    them (`YOUNG`: 66 -> 58 us an update, 3 runs each, alternated).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, *gc.get_threshold()[1:])
    if _timed not in gc.callbacks:
        gc.callbacks.append(_timed)


_started: list[float] = []


def _timed(phase: str, info: dict[str, Any]) -> None:
    """Each collection into `dateline_gc_pause_seconds`; a long one logged, for a p99 hunt."""
    if phase == "start":
        _started[:] = [time.perf_counter()]
        return
    if not _started:
        return
    took = time.perf_counter() - _started.pop()
    GC_SECONDS.labels(str(info["generation"])).observe(took)
    if took >= LONG_PAUSE_S:
        log.warning(
            "long garbage collection",
            generation=info["generation"],
            ms=round(took * 1000, 1),
            collected=info["collected"],
            tracked=len(gc.get_objects(info["generation"])),
        )
