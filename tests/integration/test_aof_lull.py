"""The embedded server rewrites its AOF in a lull, not while writes pour in
(`store/aof.py`), on a real server with the thresholds made small."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import redis

from dateline.store.aof import HARD_GROWTH_PCT, Lull
from dateline.store.embedded import EmbeddedRedis

MB = 2**20


def _rewrites(client: redis.Redis) -> int:
    return int(client.info("persistence")["aof_rewrites"])


def _wait_for_rewrite(client: redis.Redis, before: int, seconds: float = 6.0) -> float:
    """Wait up to `seconds` for a rewrite after `before`; the deadline it waited to."""
    deadline = time.monotonic() + seconds
    while _rewrites(client) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    return deadline


def _watcher(server: EmbeddedRedis) -> threading.Thread:
    """The server's watching thread: its name is the server's data dir's."""
    [thread] = [t for t in threading.enumerate() if t.name == f"aof-lull {server.data_dir}"]
    return thread


def test_writes_pouring_in_set_off_no_rewrite_and_the_lull_after_them_does(
    tmp_path: Path,
) -> None:
    # A whole second of quiet: a stall of this process shorter than that (a busy CI
    # machine) does not look like a lull.
    lull = Lull(min_size=1 * MB, lull_s=1.0, quiet_bytes_s=64 * 1024, poll_s=0.05)
    with EmbeddedRedis(tmp_path, fsync="everysec", lull=lull) as server:
        watcher = _watcher(server)
        client = redis.Redis.from_url(server.url)
        assert client.config_get("auto-aof-rewrite-percentage") == {
            "auto-aof-rewrite-percentage": str(HARD_GROWTH_PCT)
        }
        before = _rewrites(client)
        value = b"x" * 100_000
        # About 2 MB a second for 2 s: the AOF passes its doubling and the 1 MB minimum
        # early, and never looks quiet.
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 2.0:
            client.set(f"k{n}", value)
            n += 1
            time.sleep(0.05)
        assert _rewrites(client) == before, "a rewrite came while the writes went on"
        deadline = _wait_for_rewrite(client, before)
        assert _rewrites(client) == before + 1, "no rewrite in the lull after the writes"
        # The watcher counts its rewrite once BGREWRITEAOF has answered: a small AOF is
        # rewritten before that thread runs again, and this one saw it first (CI, 2026-12-03).
        assert server.rewrites is not None
        while server.rewrites.rewrites == 0 and time.monotonic() < deadline + 1.0:
            time.sleep(0.01)
        assert server.rewrites.rewrites == 1
        client.close()
    assert not watcher.is_alive()


def test_a_server_read_hard_is_not_in_a_lull_though_nothing_is_written(
    tmp_path: Path,
) -> None:
    """A rebuild with its read models apart reads the log's server and writes nothing to
    it: the log's rewrite must wait for the reads to end, not take a core from them."""
    lull = Lull(min_size=1 * MB, lull_s=1.0, quiet_bytes_s=64 * 1024, poll_s=0.05)
    with EmbeddedRedis(tmp_path, fsync="everysec", lull=lull) as server:
        client = redis.Redis.from_url(server.url)
        before = _rewrites(client)
        value = b"x" * 100_000
        client.mset({f"k{n}": value for n in range(40)})  # 4 MB: past the minimum, doubled
        # 3 s of reads, some MB a second, and not a write: no rewrite.
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            client.mget([f"k{n}" for n in range(10)])
            time.sleep(0.01)
        assert _rewrites(client) == before, "a rewrite came while a reader read"
        _wait_for_rewrite(client, before)
        assert _rewrites(client) == before + 1, "no rewrite in the lull after the reads"
        client.close()


def test_a_killed_server_leaves_no_watcher_behind(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, fsync="everysec")
    server.start()
    watcher = _watcher(server)
    assert watcher.is_alive()
    server.kill()
    assert not watcher.is_alive()


def test_without_a_lull_the_server_keeps_its_own_bound_alone(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path, fsync="everysec", lull=None) as server:
        assert server.rewrites is None
        assert not [t for t in threading.enumerate() if t.name == f"aof-lull {tmp_path}"]
        client = redis.Redis.from_url(server.url)
        got = client.config_get("auto-aof-rewrite-percentage")
        assert got == {"auto-aof-rewrite-percentage": str(HARD_GROWTH_PCT)}
        client.close()


def test_a_server_started_again_after_a_crash_has_one_watcher(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, fsync="everysec")
    server.start()
    first = _watcher(server)
    assert server.process is not None
    server.process.kill()  # a crash: `kill()` is not called, the owner starts it again
    server.process.wait()
    server.start()
    try:
        assert not first.is_alive()
        assert _watcher(server).is_alive()  # one, and only one, of that name
    finally:
        server.stop()
