"""The embedded server runs on mimalloc, preloaded, where its build uses libc's malloc:
the allocator was 15% of its CPU appending (docs/decisions.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import redis

from dateline.store.embedded import (
    EmbeddedRedis,
    EmbeddedRedisError,
    mimalloc_library,
    preloaded_allocator,
    server_binary,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="LD_PRELOAD: Linux only"
)


def _mapped(pid: int) -> set[str]:
    """The shared objects the process has loaded."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {Path(line.split()[-1]).name for line in maps if ".so" in line}


def _served(tmp_path: Path) -> tuple[EmbeddedRedis, set[str]]:
    with EmbeddedRedis(tmp_path, fsync="everysec") as server:
        assert server.process is not None
        mapped = _mapped(server.process.pid)
        client = redis.Redis(port=server.port)
        # It serves as before: a write, a script, a stream.
        client.set("k", "v" * 5000)
        assert client.eval("return redis.call('GET', KEYS[1])", 1, "k") == b"v" * 5000
        client.xadd("s", {"f": "x"})
        assert client.xlen("s") == 1
        client.close()
        return server, mapped


def test_the_embedded_server_runs_on_mimalloc(tmp_path: Path) -> None:
    library = mimalloc_library()
    assert library is not None, "cmeel-mimalloc is a dependency on Linux: is .venv synced?"
    server, mapped = _served(tmp_path)
    assert server.allocator == library
    assert library.name in mapped


def test_libc_is_kept_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATELINE_REDIS_ALLOCATOR", "libc")
    server, mapped = _served(tmp_path)
    assert server.allocator is None
    assert not any(name.startswith("libmimalloc") for name in mapped)


def test_an_unknown_allocator_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATELINE_REDIS_ALLOCATOR", "jemalloc")
    with pytest.raises(EmbeddedRedisError, match=r"DATELINE_REDIS_ALLOCATOR='jemalloc'.*mimalloc"):
        preloaded_allocator(server_binary())


def test_a_server_built_on_another_allocator_keeps_it(tmp_path: Path) -> None:
    # A stand-in binary that answers --version as a jemalloc build of Redis does.
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'Redis server v=7.2.4 sha=00000000:0 malloc=jemalloc-5.3.0'\n")
    fake.chmod(0o755)
    assert preloaded_allocator(fake) is None
    assert preloaded_allocator(server_binary()) == mimalloc_library()


def _huge_kb(pid: int) -> int:
    smaps = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    return sum(int(line.split()[1]) for line in smaps if line.startswith("AnonHugePages:"))


@pytest.mark.skipif(
    not Path("/sys/kernel/mm/transparent_hugepage/enabled").exists(),
    reason="a kernel without transparent huge pages",
)
def test_the_embedded_server_grows_on_small_pages(tmp_path: Path) -> None:
    """mimalloc advises huge pages for its arenas: each first write to a new 2 MB stopped
    the server 5.5 to 9 ms while the kernel zeroed it (docs/decisions.md). The server is
    started with THP off for itself, so its data grows a small page at a time."""
    with EmbeddedRedis(tmp_path, fsync="everysec") as server:
        status = Path(f"/proc/{server.pid}/status").read_text()
        client = redis.Redis(port=server.port)
        pipe = client.pipeline(transaction=False)
        for _ in range(40_000):  # 16 MB in a list: eight huge pages' worth, and more
            pipe.rpush("grown", b"x" * 400)
        pipe.execute()
        assert client.llen("grown") == 40_000
        huge = _huge_kb(server.pid)
        client.close()
    if "THP_enabled:" in status:  # Linux 5.0 and later say so
        assert "THP_enabled:\t0" in status
    assert huge == 0
