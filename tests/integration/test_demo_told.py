"""`dateline demo` on a log that holds the story already says so, and how to see it unfold."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dateline.cli import demo
from dateline.store.config import Settings
from dateline.store.log import Log
from tests.integration.conftest import hanoi_in
from tests.projection_helpers import HANOI, HANOI_VERSION


async def test_a_story_in_the_log_already_is_said_with_the_way_to_start_afresh(
    source: Log, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = dataclasses.replace(
        Settings.from_env({"REDIS_URL": redis_url}),
        prefix=source.keys.prefix,
        partitions=source.keys.partitions,
        data_dir=Path("/somewhere"),
    )
    updates = [x for x in HANOI.read_bytes().splitlines() if x.strip()]
    await demo._say_if_told(cfg, redis_url, updates)
    assert capsys.readouterr().err == ""  # a new log: the story unfolds
    await hanoi_in(source)
    await demo._say_if_told(cfg, redis_url, updates)
    said = capsys.readouterr().err
    assert f"is in this log already, at version {HANOI_VERSION} (data: /somewhere)" in said
    assert "python3 dev.py demo --fresh" in said
    await demo._say_if_told(cfg, redis_url, [b"{not json"])  # said as it is published
    assert capsys.readouterr().err == ""
