"""Garbage collections are timed: a p99 hunt starts from the histogram and the log. A
burst of large blocks is given back once freed."""

from __future__ import annotations

import contextlib
import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from dateline.runtime import heap
from dateline.runtime.metrics import GC_SECONDS


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    threshold = gc.get_threshold()
    # A logger of its own: one cached earlier, under another test's structlog set-up,
    # would not write where `capture_logs` looks.
    monkeypatch.setattr(heap, "log", structlog.get_logger("dateline.runtime.heap"))
    heap.tune_collector()
    yield
    gc.callbacks.remove(heap._timed)
    gc.unfreeze()
    gc.set_threshold(*threshold)


@contextlib.contextmanager
def _only_asked() -> Iterator[None]:
    """No collection but the test's own: one the interpreter starts meanwhile (any
    thread's allocations count) would be logged beside it."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _count(generation: int) -> float:
    for metric in GC_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels == {"generation": str(generation)}:
                return sample.value
    return 0.0


def test_every_collection_is_counted_by_generation(timed: None) -> None:
    before = _count(2), _count(0)
    gc.collect()
    gc.collect(0)
    # At least: the interpreter may collect on its own meanwhile.
    assert _count(2) >= before[0] + 1
    assert _count(0) >= before[1] + 1


def test_a_long_collection_is_logged_with_its_generation(
    timed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heap, "LONG_PAUSE_S", 0.0)
    with capture_logs() as logs, _only_asked():
        gc.collect(1)
    [entry] = [e for e in logs if e["event"] == "long garbage collection"]
    assert entry["generation"] == 1
    assert entry["ms"] >= 0


def test_a_short_collection_is_not_logged(timed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "LONG_PAUSE_S", 60.0)
    with capture_logs() as logs, _only_asked():
        gc.collect(0)
    assert not [e for e in logs if e["event"] == "long garbage collection"]


def test_freezing_twice_times_each_collection_once(timed: None) -> None:
    heap.tune_collector()
    assert gc.callbacks.count(heap._timed) == 1


def test_the_young_are_collected_less_often_and_the_old_as_before() -> None:
    before = gc.get_threshold()  # a service started by an earlier test may have set it
    gc.set_threshold(700, 10, 20)  # CPython's young default; old ones of our own
    heap.tune_collector()
    try:
        assert gc.get_threshold() == (heap.YOUNG, 10, 20)
        assert heap.YOUNG > 700
    finally:
        gc.callbacks.remove(heap._timed)
        gc.unfreeze()
        gc.set_threshold(*before)


# In a process of its own: the setting is the whole process's. Answers of 5 MB held while
# clients take them, each outliving it a small block from the same heap (as a request's
# own objects do): once the answers are freed, what is left of the heap is what stays.
# The small blocks are 16 KiB: blocks of 1 KiB were served from chunks the imports had
# freed below the heap's top, where they hold nothing up, and whether the imports left
# such chunks moved with the checkout's path (0 MB kept in /work/main, 500 in a clone).
_BURST = """
import sys
from dateline.runtime.heap import give_back_large_blocks
if sys.argv[1] == "given back":
    assert give_back_large_blocks()
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
before = rss_mb()
freed = bytearray(5 << 20)
del freed  # glibc serves blocks this large from its heap from now on, unless told not to
small, held = [], []
for _ in range(100):
    held.append(bytearray(5 << 20))
    small.append(bytearray(16 << 10))
del held
print(rss_mb() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc, /proc")
def test_a_burst_of_large_answers_is_given_back_once_they_are_freed() -> None:
    def grown_mb(how: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", _BURST, how], capture_output=True, text=True, check=True
        )
        return int(done.stdout)

    assert grown_mb("as glibc does") > 250  # the case the setting is for: else, no test
    assert grown_mb("given back") < 50


# Cancelled live streams, as an idle process holds them: each a cycle (an exception's
# traceback and the frame it passed) holding the page it sent, from glibc's heap, between
# small blocks that outlive them.
_CYCLES = """
import gc, sys
from dateline.runtime.heap import give_back_large_blocks, reclaim
give_back_large_blocks()
gc.disable()  # an idle process: no collection but the one asked for
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
class Frame:
    pass
before = rss_mb()
small = []
for _ in range(1000):
    frame = Frame()
    frame.me, frame.page = frame, b"p" * 200_000
    small.append(bytearray(4 << 10))  # not 1 KiB: see _BURST
del frame
held = rss_mb() - before
if sys.argv[1] == "collected":
    gc.collect()
else:
    found, trimmed = reclaim()
    assert found >= 1000 and trimmed
print(held, rss_mb() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc, /proc")
def test_the_memory_of_cycles_is_given_back_by_a_reclaim() -> None:
    def grown_mb(how: str) -> tuple[int, int]:
        done = subprocess.run(
            [sys.executable, "-c", _CYCLES, how], capture_output=True, text=True, check=True
        )
        held, after = done.stdout.split()
        return int(held), int(after)

    held, collected = grown_mb("collected")
    assert held > 150  # the cycles' pages, held until a full collection
    assert collected > 150  # collected, but kept by glibc between the small blocks
    held, reclaimed = grown_mb("reclaimed")
    assert held > 150 and reclaimed < 30
