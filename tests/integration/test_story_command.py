"""`dateline story` on a real server, in process: what on-call reads when a fold fails."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from dateline.cli import main as cli_main
from dateline.cli import projector_cmd
from dateline.cli.main import cli
from dateline.store.layout import Keys
from dateline.store.log import Log
from tests.factories import encode, update
from tests.integration.test_projector import failing_on


def test_a_story_that_cannot_be_folded_is_one_line_that_names_it(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"

    async def publish() -> None:
        log = Log(aioredis.Redis.from_url(redis_url), Keys(prefix, 4))
        await log.check_partitions()
        await log.append([encode(update(subject="bad", id=f"bad-{v}")) for v in range(2)])
        await log.close()

    async def clean() -> None:
        client = aioredis.Redis.from_url(redis_url)
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            await client.delete(key)
        await client.aclose()

    asyncio.run(publish())
    try:
        for name, value in (("REDIS_URL", redis_url), ("DATELINE_PREFIX", prefix)):
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("DATELINE_PARTITIONS", "4")
        # Not the process's logging: structlog set to cache its loggers, writing to the
        # runner's stream, would stay so for the rest of the suite and its log captures.
        monkeypatch.setattr(cli_main, "configure", lambda **_: None)
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
    finally:
        asyncio.run(clean())
