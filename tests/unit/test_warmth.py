"""The warm tier's health: a window that decoded too many states again says so, once."""

from __future__ import annotations

from dateline.projector.warmth import Warmth


def test_a_window_that_decoded_many_states_again_ends_in_a_warning() -> None:
    warmth = Warmth(window_s=60, share=0.25, least=100)
    assert warmth.found(60, 30, 10, now=0.0) is None
    assert warmth.found(60, 30, 10, now=59.9) is None  # the window is not over
    said = warmth.found(0, 0, 0, now=60.0)
    assert said == {"states": 200, "decoded_again": 0.3, "warm": 120, "packed": 60, "read": 20}
    # A new window counts from nothing: the next warning waits for its end.
    assert warmth.counts == [0, 0, 0]
    assert warmth.found(0, 200, 0, now=61.0) is None
    assert warmth.found(0, 0, 0, now=120.0) is not None


def test_a_warm_window_a_quiet_one_and_reads_alone_say_nothing() -> None:
    warmth = Warmth(window_s=10, share=0.25, least=100)
    warmth.found(75, 25, 0, now=0.0)
    assert warmth.found(0, 0, 0, now=10.0) is None  # a quarter: not past it
    warmth.found(0, 99, 0, now=11.0)
    assert warmth.found(0, 0, 0, now=21.0) is None  # 99 states prove little
    # A process new to its stories reads them all from the store: no warning.
    warmth.found(0, 0, 1000, now=22.0)
    assert warmth.found(0, 0, 0, now=32.0) is None
