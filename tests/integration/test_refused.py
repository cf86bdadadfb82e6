"""`dateline feeds refused`: what the validator refused from the inboxes, read back."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from dateline.cli.main import cli
from dateline.store import refused
from dateline.store.layout import Keys
from dateline.store.log import Log
from tests.factories import encode, update


async def _refuse(log: Log) -> None:
    """Three refusals of wire-a's, then one of desk's, then one more of wire-a's, written
    as the validator writes them (`tests/integration/test_validator.py` has it do so)."""
    for i, (feed, raw, field) in enumerate(
        (
            ("wire-a", encode(update(id="bad-1", subject="Not An Id")), "subject"),
            ("wire-a", b"{truncated", "update"),
            ("wire-a", encode(update(id="theirs", source="urn:feed:other")), "source"),
            ("desk", encode(update(id="d-1", source="urn:feed:test")), "source"),
            ("wire-a", b"", "entry"),
        )
    ):
        pipe = log.redis.pipeline(transaction=True)
        reason = f"refusal {i}: no __data__ field" if field == "entry" else f"refusal {i}"
        refused.add(
            pipe, log.keys.prefix, feed=feed, entry=f"1-{i}", raw=raw, field=field, reason=reason
        )
        await pipe.execute()


async def test_refusals_are_read_newest_first_by_feed_and_time(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _refuse(log)
    client, prefix = log.redis, log.keys.prefix
    every = await refused.refusals(client, prefix)
    assert [(r.feed, r.field) for r in every] == [
        ("wire-a", "entry"),
        ("desk", "source"),
        ("wire-a", "source"),
        ("wire-a", "update"),
        ("wire-a", "subject"),
    ]
    assert [r.id for r in every] == [None, "d-1", "theirs", None, "bad-1"]
    assert every[1].subject == "hanoi-summit-2019" and every[1].entry == "1-3"
    assert every[0].record is None and every[3].size == len(b"{truncated")
    # Paged back through the stream: a page of one, so desk's one is found past four.
    monkeypatch.setattr(refused, "_PAGE", 1)
    [only] = await refused.refusals(client, prefix, feed="desk", with_record=True)
    assert only.entry and only.record is not None and '"id":"d-1"' in only.record
    assert [r.id for r in await refused.refusals(client, prefix, feed="wire-a", limit=2)] == [
        None,
        "theirs",
    ]
    assert await refused.refusals(client, prefix, feed="nobody") == []
    assert await refused.refusals(client, prefix, since_ms=every[0].ms + 1) == []
    assert len(await refused.refusals(client, prefix, since_ms=every[-1].ms)) == 5
    assert await refused.counted(client, prefix) == 5


def test_the_command_prints_them_and_says_when_there_are_none(
    redis_url: str, cli_prefix: str
) -> None:
    async def fill() -> None:
        log = Log(aioredis.Redis.from_url(redis_url), Keys(cli_prefix, 4))
        await log.check_partitions()
        await _refuse(log)
        await log.close()

    asyncio.run(fill())
    runner = CliRunner()
    shown = runner.invoke(cli, ["feeds", "refused", "wire-a", "--limit", "3"])
    assert shown.exit_code == 0, shown.output
    lines = [line.split("\t") for line in shown.stdout.splitlines()]
    assert [(f[1], f[3], f[4]) for f in lines] == [
        ("wire-a", "-", "entry"),
        ("wire-a", "theirs (hanoi-summit-2019)", "source"),
        ("wire-a", "-", "update"),
    ]
    assert "no __data__ field" in lines[0][5]
    assert "3 refusals of feed 'wire-a', newest first (5 held in all; --limit 15" in shown.stderr
    whole = runner.invoke(cli, ["feeds", "refused", "--json", "--record"])
    docs = [json.loads(line) for line in whole.stdout.splitlines()]
    assert [d["feed"] for d in docs] == ["wire-a", "desk", "wire-a", "wire-a", "wire-a"]
    assert docs[3]["record"] == "{truncated" and docs[3]["id"] is None
    none = runner.invoke(cli, ["feeds", "refused", "nobody", "--since", "5"])
    assert none.exit_code == 0
    assert (
        none.stdout
        == "nothing refused of feed 'nobody' in the last 5 min (5 refusals held in all)\n"
    )
