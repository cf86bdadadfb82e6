"""Short full garbage collections in long-running services, and a heap that gives back
what a burst of large answers took."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
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


LARGE_BLOCK = 1 << 20
"""A block of this many bytes or more is mapped of its own, and unmapped when freed."""
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def give_back_large_blocks() -> bool:
    """Blocks of `LARGE_BLOCK` or more from their own mappings, always (glibc; elsewhere
    nothing, and False).

    glibc maps a large block of its own and unmaps it when freed, but each time one is
    freed it raises that size (to 32 MB at most) and serves the next ones from its heap,
    which it seldom gives back. A query process that answered 1,000 reads of a story of
    5.4 MB at once stayed at 476 MB after (from 80); with the size fixed at 1 MiB, at 162
    (`docs/decisions.md`, "Memory bounded by design").
    """
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK))


def _libc_function(name: str) -> Any:
    """A function of the C library (glibc's, where it has `name`), or None."""
    libc = _libc()
    return None if libc is None else getattr(libc, name, None)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, found once: `find_library` runs `ldconfig` in a child process."""
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


def reclaim() -> tuple[int, bool]:
    """A full collection, then the free memory in glibc's heap given back to the system
    (`malloc_trim`; elsewhere only the collection): (objects collected, trimmed).

    For a process after a burst has ended. A live stream whose client left is cancelled
    in litestar's loop, and the exception's traceback keeps that loop's frame, and the
    last page it sent, in a cycle that only a full collection frees; an idle process
    runs none. A thousand index streams closed at once: the query process stayed at 400
    to 570 MB, 1,000 frames holding 157 to 256 MB between them; a full collection (85
    ms) took it to 257 and 382 MB, what glibc then held free, and `malloc_trim` (6 to
    10 ms) to 120.
    """
    found = gc.collect()
    trim = _libc_function("malloc_trim")
    if trim is None:
        return found, False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return found, bool(trim(0))


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
