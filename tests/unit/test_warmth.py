"""The kept tiers' health: a window that decoded too many states again, or dropped too
many past the kept bounds, says so once, naming the setting to raise."""

from __future__ import annotations

from dateline.projector.warmth import KEEP_SETTING, WARM_SETTING, Warmth


def test_a_window_that_decoded_many_states_again_ends_in_a_warning() -> None:
    warmth = Warmth(window_s=60, share=0.25, least=100)
    assert warmth.found(60, 30, 10, now=0.0) == []
    assert warmth.found(60, 30, 10, now=59.9) == []  # the window is not over
    said = warmth.found(0, 0, 0, now=60.0)
    assert said == [
        (
            WARM_SETTING,
            {
                "states": 200,
                "warm": 120,
                "packed": 60,
                "read": 20,
                "dropped": 0,
                "decoded_again": 0.3,
            },
        )
    ]
    # A new window counts from nothing: the next warning waits for its end.
    assert warmth.counts == [0, 0, 0, 0]
    assert warmth.found(0, 200, 0, now=61.0) == []
    assert warmth.found(0, 0, 0, now=120.0) != []


def test_a_warm_window_a_quiet_one_and_reads_alone_say_nothing() -> None:
    warmth = Warmth(window_s=10, share=0.25, least=100)
    warmth.found(75, 25, 0, now=0.0)
    assert warmth.found(0, 0, 0, now=10.0) == []  # a quarter: not past it
    warmth.found(0, 99, 0, now=11.0)
    assert warmth.found(0, 0, 0, now=21.0) == []  # 99 states prove little
    # A process new to its stories reads them all from the store: no warning.
    warmth.found(0, 0, 1000, now=22.0)
    assert warmth.found(0, 0, 0, now=32.0) == []


def test_reads_that_drop_other_states_name_the_kept_setting() -> None:
    """Past the kept bounds each story that comes round is read from the store and
    pushes another out: the reads alone say nothing, the drops do."""
    warmth = Warmth(window_s=10, share=0.25, least=100)
    warmth.found(50, 10, 40, now=0.0, dropped=40)
    [(setting, said)] = warmth.found(0, 0, 0, now=10.0)
    assert setting == KEEP_SETTING
    assert said["dropped"] == 40 and said["dropped_share"] == 0.4 and said["read"] == 40
    # Both tiers too small in one window: two warnings, each naming its setting.
    warmth.found(20, 40, 40, now=11.0, dropped=40)
    assert [s for s, _ in warmth.found(0, 0, 0, now=20.0)] == [WARM_SETTING, KEEP_SETTING]
    # A quarter dropped is not past it.
    warmth.found(75, 0, 25, now=21.0, dropped=25)
    assert warmth.found(0, 0, 0, now=30.0) == []
