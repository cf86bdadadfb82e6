"""`dateline story` on a real server, in process: what on-call reads when a fold fails."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from dateline.cli import projector_cmd
from dateline.cli.main import cli
from dateline.store.layout import Keys
from dateline.store.log import Log
from tests.factories import encode, update
from tests.integration.test_projector import failing_on


def test_a_story_that_cannot_be_folded_is_one_line_that_names_it(
    redis_url: str, cli_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def publish() -> None:
        log = Log(aioredis.Redis.from_url(redis_url), Keys(cli_prefix, 4))
        await log.check_partitions()
        await log.append([encode(update(subject="bad", id=f"bad-{v}")) for v in range(2)])
        await log.close()

    asyncio.run(publish())
    # A projection bug in the code this command runs.
    monkeypatch.setattr(projector_cmd, "project", failing_on("bad", 2)["project_fn"])
    runner = CliRunner()
    before = runner.invoke(cli, ["story", "bad", "--at-version", "1", "--json"])
    assert before.exit_code == 0, before.output
    assert json.loads(before.stdout)["version"] == 1
    failed = runner.invoke(cli, ["story", "bad", "--at-version", "2"])
    assert failed.exit_code == 1
    assert "story 'bad' cannot be folded from its history" in failed.stderr
    assert "RuntimeError('projection bug')" in failed.stderr
    assert "dateline dlq show bad" in failed.stderr
    assert "Traceback" not in failed.output
