"""When the embedded server's AOF is rewritten: `Lull`, over sizes it is given."""

from __future__ import annotations

from typing import cast

import redis

from dateline.store.aof import Lull, LullRewrites, Sizes

MB = 2**20


def _lull() -> Lull:
    return Lull(growth=1.0, min_size=10 * MB, lull_s=10.0, quiet_bytes_s=64 * 1024)


def _feed(lull: Lull, points: list[tuple[float, int]], base: int = 20 * MB) -> list[bool]:
    return [lull.due(Sizes(at, size, base, busy=False)) for at, size in points]


def _read(lull: Lull, points: list[tuple[float, int]]) -> list[bool]:
    """An AOF that doubled and stands still, and what the server has sent by each time."""
    return [lull.due(Sizes(at, 45 * MB, 20 * MB, busy=False, sent=sent)) for at, sent in points]


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


def test_no_rewrite_while_a_reader_takes_megabytes_a_second() -> None:
    """A rebuild with its read models apart only reads the log's server: its AOF stands
    still, and its rewrite came in the middle of the rebuild (the bench's order replayed,
    2026-12-05)."""
    assert not any(_read(_lull(), [(t, t * 40 * MB) for t in range(30)]))


def test_the_rewrite_comes_a_whole_lull_after_the_reads_stopped() -> None:
    lull = _lull()
    reading = _read(lull, [(t, t * 40 * MB) for t in range(20)])
    after = _read(lull, [(t, 19 * 40 * MB) for t in range(20, 40)])
    assert not any(reading)
    assert after.index(True) == 29 - 20


def test_a_projectors_few_reads_a_second_still_count_as_a_lull() -> None:
    # 100 updates a second: the log's server sent its projector 54 KB a second.
    assert _read(_lull(), [(t, t * 54 * 1024) for t in range(11)])[-1]


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


def test_a_drop_across_someone_elses_rewrite_is_not_a_lull() -> None:
    """The bench's `rewritten()` (or an operator's BGREWRITEAOF) shrinks the AOF; writes
    that go on after it, faster than a lull, must not read as a lull because the size
    ten seconds ago was the larger file before that rewrite (seen in a bench run: a
    rewrite started in the middle of a rebuild)."""
    lull = _lull()
    _feed(lull, [(t, 100 * MB) for t in range(5)])
    # Rewritten at t = 5 to a base of 40 MB, then 8 MB a second: twice the base by t = 10,
    # when the size ten seconds before is the 100 MB file before the rewrite.
    after = _feed(lull, [(t, 40 * MB + (t - 5) * 8 * MB) for t in range(5, 20)], base=40 * MB)
    assert not any(after)


class _Server:
    """What `LullRewrites` asks of a client, for one server whose AOF doubled."""

    def __init__(self) -> None:
        self.base, self.current, self.rewriting, self.started = 20 * MB, 45 * MB, 0, 0
        self.connection_pool = self

    def info(self, section: str) -> dict[str, int]:
        if section == "stats":
            return {"total_net_output_bytes": 0}
        return {
            "aof_enabled": 1,
            "aof_current_size": self.current,
            "aof_base_size": self.base,
            "aof_rewrite_in_progress": self.rewriting,
            "aof_rewrite_scheduled": 0,
        }

    def bgrewriteaof(self) -> None:
        self.rewriting, self.started = 1, self.started + 1

    def finish(self) -> None:
        self.rewriting, self.base, self.current = 0, 20 * MB, 20 * MB

    def disconnect(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_servers_of_one_process_rewrite_one_at_a_time() -> None:
    """A local cluster's nodes take the same writes and pause together: their rewrites
    start one after the other, not six forks at once."""
    servers = [_Server(), _Server()]
    watches = [
        LullRewrites(cast(redis.Redis, s), Lull(min_size=1, lull_s=1e-9), f"node-{i}")
        for i, s in enumerate(servers)
    ]
    try:
        for _ in range(2):  # the second look sees a lull (no growth since the first)
            for watch in watches:
                watch._check()
        assert [s.started for s in servers] == [1, 0]
        servers[0].finish()
        watches[1]._check()
        assert servers[1].started == 0, "started before the first one's watch saw it end"
        watches[0]._check()  # it sees its rewrite ended
        watches[1]._check()
        assert [s.started for s in servers] == [1, 1]
    finally:
        for watch in watches:
            watch.stop()
