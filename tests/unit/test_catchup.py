"""Whether the projection is catching up, from status reports some seconds apart."""

from __future__ import annotations

import pytest

from dateline.runtime.catchup import Sample, Verdict, described, pace, sample


def polls(*points: tuple[int, int], every: float = 2.0, exact: bool = True) -> list[Sample]:
    """(entries in the log, lag) a poll, `every` seconds apart."""
    return [Sample(1000.0 + i * every, a, lag, exact) for i, (a, lag) in enumerate(points)]


def test_no_pace_until_two_reports_a_second_apart() -> None:
    assert pace([]) is None
    assert pace(polls((10, 5))) is None
    assert pace(polls((10, 5), (12, 5), every=0.5)) is None


def test_catching_up_says_when_it_will_be_done() -> None:
    # 500 appended a second, the lag down 3,000 a second: 3,500 projected a second.
    found = pace(polls((0, 30_000), (1_000, 24_000), (2_000, 18_000)))
    assert found is not None
    assert found.verdict is Verdict.CATCHING_UP
    assert (found.appended_per_s, found.projected_per_s) == (500.0, 3_500.0)
    assert found.eta_s == 6.0
    assert described(found) == (
        "catching up: 18,000 behind; appended 500/s, projected 3,500/s; about 6 s to go"
    )


def test_the_pace_is_the_windows_not_the_whole_watch() -> None:
    # Stalled for a minute, then catching up: the last 10 s say catching up.
    stalled = [(i * 100, 10_000 + i * 100) for i in range(30)]
    then = [(3_000 + i * 100, 12_900 - i * 1_000) for i in range(1, 11)]
    found = pace(polls(*stalled, *then))
    assert found is not None and found.verdict is Verdict.CATCHING_UP
    assert found.seconds == 10.0
    assert (found.appended_per_s, found.projected_per_s) == (50.0, 550.0)


@pytest.mark.parametrize(
    ("points", "verdict", "line"),
    [
        ([(0, 0), (800, 0)], Verdict.UP_TO_DATE, "up to date; appended 400/s, projected 400/s"),
        (
            [(0, 5_000), (2_000, 7_000)],
            Verdict.STALLED,
            "STALLED: 7,000 behind and nothing projected in 2 s; appended 1,000/s, projected 0/s",
        ),
        (
            [(0, 5_000), (2_000, 6_000)],
            Verdict.FALLING_BEHIND,
            "FALLING BEHIND: 6,000 behind; appended 1,000/s, projected 500/s",
        ),
        (
            [(0, 50_000), (2_000, 50_050)],  # rising by 2.5% of the rates
            Verdict.HOLDING,
            "holding 50,050 behind: appended 1,000/s, projected 975/s",
        ),
    ],
)
def test_each_verdict_and_its_line(
    points: list[tuple[int, int]], verdict: Verdict, line: str
) -> None:
    found = pace(polls(*points))
    assert found is not None
    assert found.verdict is verdict
    assert found.eta_s is None
    assert described(found) == line


def test_a_lag_the_report_could_not_count_has_no_pace() -> None:
    """Redis 6.2 counts by reading, up to a bound: a floor moves as the bound lets it."""
    found = pace(polls((0, 80_000), (2_000, 80_000), exact=False))
    assert found is not None and found.verdict is Verdict.UNCOUNTED
    assert described(found).startswith("at least 80,000 behind, more than the report counts")


@pytest.mark.parametrize(
    ("lag", "shrinking", "words"),
    [(90_000, 1_000, "about 2 min to go"), (36_000_000, 1_000, "about 10.0 h to go")],
)
def test_long_waits_read_in_minutes_and_hours(lag: int, shrinking: int, words: str) -> None:
    found = pace(polls((0, lag + 2 * shrinking), (0, lag)))
    assert found is not None and described(found).endswith(words)


def by_partition(at: float, *parts: tuple[str | None, int]) -> Sample:
    """A report at `at`, each partition's (checkpoint, lag); nothing appended."""
    return sample(at, [0] * len(parts), [c for c, _ in parts], [lag for _, lag in parts], True)


def test_a_partition_behind_that_does_not_move_is_named_while_the_rest_catch_up() -> None:
    """Partition 2's checkpoint stands still with updates past it; 0 and 1 move. The
    pace is the whole's, and the line says which one will not be done by then."""
    before = by_partition(1000.0, ("1-0", 5_000), ("1-0", 5_000), ("7-0", 300), (None, 40))
    after = by_partition(1010.0, ("9-0", 1_000), ("9-0", 1_000), ("7-0", 300), (None, 40))
    found = pace([before, after])
    assert found is not None and found.verdict is Verdict.CATCHING_UP
    assert found.unmoved == (2, 3)
    assert described(found) == (
        "catching up: 2,340 behind; appended 0/s, projected 800/s; about 3 s to go; "
        "partitions 2, 3 behind and not moved in 10 s"
    )


def test_a_partition_that_was_not_behind_at_the_spans_start_is_not_named() -> None:
    """At a few updates a second a partition's checkpoint stands for seconds, and an
    update that came a moment ago is behind: not a partition that does not move."""
    before = by_partition(1000.0, ("1-0", 3_000), ("5-0", 0))
    after = by_partition(1010.0, ("9-0", 1_000), ("5-0", 1))
    found = pace([before, after])
    assert found is not None and found.unmoved == ()


def test_no_partition_is_named_over_a_short_span_or_when_nothing_moves() -> None:
    before = by_partition(1000.0, ("1-0", 3_000), ("5-0", 10))
    short = pace([before, by_partition(1004.0, ("9-0", 1_000), ("5-0", 10))])
    assert short is not None and short.unmoved == ()
    stalled = pace([before, by_partition(1010.0, ("1-0", 3_000), ("5-0", 10))])
    assert stalled is not None and stalled.verdict is Verdict.STALLED
    assert stalled.unmoved == ()


def test_stalled_names_the_partitions_behind_where_not_all_are() -> None:
    before = by_partition(1000.0, ("1-0", 0), ("5-0", 10), ("6-0", 0))
    after = by_partition(1010.0, ("1-0", 0), ("5-0", 10), ("6-0", 0))
    found = pace([before, after])
    assert found is not None and found.behind == (1,)
    assert described(found) == (
        "STALLED: 10 behind (partition 1) and nothing projected in 10 s; "
        "appended 0/s, projected 0/s"
    )
    every = by_partition(1010.0, ("1-0", 3), ("5-0", 10), ("6-0", 2))
    first = by_partition(1000.0, ("1-0", 3), ("5-0", 10), ("6-0", 2))
    found = pace([first, every])
    assert found is not None
    assert described(found).startswith("STALLED: 15 behind and nothing projected")
