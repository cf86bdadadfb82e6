"""The chaos run's checker (in the default suite: it takes a second): on a real server,
what it calls lost and what it calls an invalid update acknowledged; and how it sees the
services' code change under a run."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import redis.asyncio as aioredis

from dateline.store.layout import Keys
from tests.chaos.harness import (
    BAD_STORY,
    PARTITIONS,
    PREFIX,
    SOURCE,
    Clients,
    Op,
    check,
)
from tests.conftest import fresh_log
from tests.e2e.processes import changed, sources
from tests.factories import encode, update


def _clients(ops: list[Op]) -> Clients:
    return cast(
        Clients,
        SimpleNamespace(ops=ops, story_events=[], index_events=[], notes=[], server_errors=[]),
    )


async def test_an_invalid_update_acknowledged_is_named_so_and_a_missing_one_lost(
    redis_url: str,
) -> None:
    # The checker reads the chaos run's own prefix.
    async with fresh_log(aioredis.Redis.from_url(redis_url), Keys(PREFIX, PARTITIONS)) as log:
        landed = encode(update(subject="chaos-1", id="h1-1", source=SOURCE))
        assert (await log.append([landed]))[0].status == "appended"
        ops = [
            Op("http", "h1-1", "chaos-1", outcome="acknowledged"),  # in the log
            Op("http", "h1-2", "chaos-2", outcome="acknowledged"),  # not in it: lost
            Op("http", "h1-50", BAD_STORY, outcome="acknowledged"),  # must have been refused
            Op("http", "h2-50", BAD_STORY, outcome="refused"),  # as it must be
        ]
        result = await check(log.redis, log.redis, _clients(ops), [])

    assert result.lost == ["h1-2"]
    assert result.accepted_invalid == ["h1-50"]
    assert result.refused_present == []
    assert not result.ok


def test_a_file_of_the_services_code_changed_added_or_removed_is_named(tmp_path: Path) -> None:
    package = tmp_path / "dateline"
    (package / "__pycache__").mkdir(parents=True)
    for name in ("kept.py", "edited.py", "removed.py", "undone.py"):
        (package / name).write_text(f"# {name}\n")
    before = sources(package)
    (package / "edited.py").write_text("# edited under a running chaos run\n")
    undone = package / "undone.py"
    undone.write_text("# undone.py\n")  # written again as it was
    # ...a moment later: the kernel stamps a write by a clock of a few milliseconds' grain,
    # which a test's writes in a row may not leave.
    later = undone.stat().st_mtime_ns + 5_000_000
    os.utime(undone, ns=(later, later))
    (package / "added.py").write_text("")
    (package / "removed.py").unlink()
    (package / "__pycache__" / "kept.cpython-311.pyc").write_bytes(b"compiled")

    assert changed(before, sources(package)) == [
        str(package / name) for name in ("added.py", "edited.py", "removed.py", "undone.py")
    ]
    assert changed(before, before) == []
