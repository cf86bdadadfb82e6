"""When the embedded server's AOF is rewritten: `Lull`, over sizes it is given."""

from __future__ import annotations

from dateline.store.aof import Lull, Sizes

MB = 2**20


def _lull() -> Lull:
    return Lull(growth=1.0, min_size=10 * MB, lull_s=10.0, quiet_bytes_s=64 * 1024)


def _feed(lull: Lull, points: list[tuple[float, int]], base: int = 20 * MB) -> list[bool]:
    return [lull.due(Sizes(at, size, base, busy=False)) for at, size in points]


def test_a_quiet_aof_that_doubled_is_rewritten_once_watched_for_a_whole_lull() -> None:
    due = _feed(_lull(), [(t, 45 * MB) for t in range(12)])
    assert due == [False] * 10 + [True, True]


def test_an_aof_that_has_not_doubled_waits_however_quiet() -> None:
    assert not any(_feed(_lull(), [(t, 39 * MB) for t in range(30)]))


def test_no_rewrite_while_the_writes_go_on() -> None:
    # 1 MB a second for 30 s: past the doubling from the start, never quiet.
    assert not any(_feed(_lull(), [(t, 45 * MB + t * MB) for t in range(30)]))


def test_the_rewrite_comes_a_whole_lull_after_the_writes_stopped() -> None:
    lull = _lull()
    busy = _feed(lull, [(t, 45 * MB + t * MB) for t in range(20)])
    after = _feed(lull, [(t, 64 * MB) for t in range(20, 40)])
    assert not any(busy)
    # Quiet since t = 19: the window's first size is 19's from t = 29 on.
    assert after.index(True) == 29 - 20


def test_a_few_writes_a_second_still_count_as_a_lull() -> None:
    assert _feed(_lull(), [(t, 45 * MB + t * 32 * 1024) for t in range(11)])[-1]


def test_the_minimum_size_holds_whatever_the_growth() -> None:
    assert not any(_feed(_lull(), [(t, 9 * MB) for t in range(30)], base=1 * MB))


def test_none_while_a_rewrite_runs_or_is_scheduled() -> None:
    lull = _lull()
    got = [lull.due(Sizes(t, 45 * MB, 20 * MB, busy=True)) for t in range(30)]
    assert not any(got)


def test_a_rewrite_that_shrank_the_aof_leaves_nothing_due() -> None:
    lull = _lull()
    _feed(lull, [(t, 45 * MB) for t in range(12)])
    assert not any(_feed(lull, [(t, 25 * MB) for t in range(12, 40)], base=25 * MB))
