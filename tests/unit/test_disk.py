"""`describe`: a server's disk in lines a person reads, from what it reported."""

from __future__ import annotations

import math

import pytest
from prometheus_client import REGISTRY

from dateline.runtime import status
from dateline.store.disk import Disk, Stall, describe, full, stalls_of

MB = 2**20
NOW = 1_800_000_000.0


def test_an_aof_and_its_rewrite_under_way() -> None:
    disk = Disk(
        "10.0.0.5:6379",
        aof=True,
        aof_bytes=812 * MB,
        rewritten_bytes=262 * MB,
        rewriting=True,
        last_rewrite="ok",
        last_write="ok",
    )
    (line, quiet) = describe(disk, NOW)
    assert line == (
        "server 10.0.0.5:6379: AOF 812.0 MB, 3.1x what the last rewrite left (262.0 MB); "
        "a rewrite runs now (its child takes a core and the disk)"
    )
    assert quiet.startswith("  no stall logged")


def test_growth_from_a_rewrite_of_next_to_nothing_is_not_said() -> None:
    """A rewrite of an empty server left 97 bytes: 0.3 MB since read as 3388x."""
    disk = Disk("r:6379", aof=True, aof_bytes=330_000, rewritten_bytes=97)
    assert describe(disk, NOW)[0] == "server r:6379: AOF 0.3 MB"


def test_a_failed_write_comes_first_and_says_writes_are_refused() -> None:
    disk = Disk(
        "r:6379", aof=True, aof_bytes=MB, rewritten_bytes=MB, last_write="err", last_rewrite="err"
    )
    lines = describe(disk, NOW)
    assert lines[0].startswith("server r:6379: THE LAST AOF WRITE FAILED: the server refuses")
    assert lines[1].endswith("; the last rewrite failed")


def test_stalls_with_their_age_and_worst() -> None:
    stalls = [
        Stall("aof-fsync-always", int(NOW) - 30, 12, 41),
        Stall("fork", int(NOW) - 7200, 38, 38),
    ]
    lines = describe(Disk("r:6379", aof=True, aof_bytes=MB, rewritten_bytes=0, stalls=stalls), NOW)
    assert lines == [
        "server r:6379: AOF 1.0 MB",
        "  stall: aof-fsync-always 12 ms, 30 s ago (worst 41 ms)",
        "  stall: fork 38 ms, 2 h ago (worst 38 ms)",
    ]


def test_no_aof_and_a_server_that_could_not_be_asked() -> None:
    assert describe(Disk("r:6379"), NOW)[0] == (
        "server r:6379: no AOF (appendonly no): what it holds is lost when it stops"
    )
    (only,) = describe(Disk("r:6379", problem="unreachable: ConnectionError()"), NOW)
    assert only == "server r:6379: its disk could not be read (unreachable: ConnectionError())"


def test_the_latency_monitors_rows_newest_first() -> None:
    rows = [[b"fork", 100, 38, 38], [b"aof-fsync-always", 300, 12, 41], [b"command", 200, 6, 9]]
    assert stalls_of(rows) == [
        Stall("aof-fsync-always", 300, 12, 41),
        Stall("command", 200, 6, 9),
        Stall("fork", 100, 38, 38),
    ]


def test_a_server_that_cannot_be_asked_leaves_no_old_figures_in_the_metrics() -> None:
    """Its last answer must not stand for now: a failed AOF write would read as fine."""
    server = "10.9.9.9:6379"
    failing = Disk(server, aof=True, aof_bytes=900, rewritten_bytes=300, last_write="err")
    status.record_disks([failing])
    assert _sample("dateline_server_aof_write_failed", server=server) == 1
    assert _sample("dateline_server_disk_known", server=server) == 1

    status.record_disks([Disk(server, problem="unreachable: connection refused")])
    assert _sample("dateline_server_disk_known", server=server) == 0
    assert _sample("dateline_server_aof_write_failed", server=server) is None
    assert _sample("dateline_server_aof_rewriting", server=server) is None
    for kind in ("current", "rewritten"):
        assert _sample("dateline_server_aof_bytes", server=server, kind=kind) is None

    status.record_disks([failing])  # asked again: back
    assert _sample("dateline_server_aof_bytes", server=server, kind="current") == 900


@pytest.mark.parametrize(
    ("used", "most", "policy", "is_full"),
    [
        (900, 1000, "noeviction", False),
        (1000, 1000, "noeviction", True),
        (1200, 1000, "noeviction", True),
        (1200, 1000, "allkeys-lru", False),  # it evicts: writes go on
        (1200, 0, "noeviction", False),  # no maxmemory
    ],
)
def test_a_server_at_its_maxmemory_under_noeviction_is_full(
    used: int, most: int, policy: str, is_full: bool
) -> None:
    disk = Disk("r:6379", aof=True, aof_bytes=MB, used_bytes=used, max_bytes=most, policy=policy)
    assert full(disk) is is_full
    lines = describe(disk, NOW)
    assert lines[0].startswith("server r:6379: FULL: ") is is_full, lines
    assert any(line.startswith("  memory ") for line in lines) is (bool(most) and not is_full)


def test_the_memory_series_go_with_a_server_that_cannot_be_asked() -> None:
    server = "10.9.9.8:6379"
    status.record_disks([Disk(server, used_bytes=5, max_bytes=10, policy="noeviction")])
    assert _sample("dateline_server_memory_bytes", server=server, kind="used") == 5
    status.record_disks([Disk(server, problem="unreachable: connection refused")])
    assert _sample("dateline_server_memory_bytes", server=server, kind="max") is None


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_server_out_of_reach_is_said_apart_from_one_that_refuses_to_be_asked() -> None:
    lost, shut = "10.9.9.10:6379", "10.9.9.11:6379"
    status.record_disks(
        [
            Disk(lost, problem="unreachable: connection refused", unreachable=True),
            Disk(shut, problem="not allowed: NOPERM (INFO and LATENCY LATEST)"),
        ]
    )
    assert _sample("dateline_server_reachable", server=lost) == 0
    assert _sample("dateline_server_reachable", server=shut) == 1
    assert _sample("dateline_server_disk_known", server=lost) == 0
    assert _sample("dateline_server_disk_known", server=shut) == 0


def test_gauges_a_scrape_could_not_read_are_gone_or_nan_not_what_they_last_said() -> None:
    status.record(
        status.Gauges(
            partitions=[status.PartitionGauges(0, 3, 1.5, 2)], parked_updates=4, backup_at=10.0
        )
    )
    assert _sample("dateline_projection_lag_seconds", partition="0") == 1.5
    status.forget_gauges()
    assert _sample("dateline_projection_lag_seconds", partition="0") is None
    assert _sample("dateline_pending_updates", partition="0") is None
    for name in ("dateline_parked_now", "dateline_backup_last_timestamp_seconds"):
        value = _sample(name)
        assert value is not None and math.isnan(value)


def test_a_lag_not_told_at_a_scrape_is_gone_not_what_it_last_said() -> None:
    """The group's count lost (its last id set by hand) or never kept (Redis 6.2): the
    partition's count of updates behind is not known, and is not left at the last."""
    status.record(status.Gauges([status.PartitionGauges(5, 3, 1.5, 2)], 0, 10.0))
    assert _sample("dateline_projection_lag_updates", partition="5") == 3
    status.record(status.Gauges([status.PartitionGauges(5, None, 1.5, 2)], 0, 10.0))
    assert _sample("dateline_projection_lag_updates", partition="5") is None
    assert _sample("dateline_projection_lag_seconds", partition="5") == 1.5
