"""The chaos run's checker, on a real server (in the default suite: it takes a second):
what it calls lost, and what it calls an invalid update acknowledged."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import redis.asyncio as aioredis

from dateline.store.layout import Keys
from tests.chaos.harness import BAD_STORY, PARTITIONS, PREFIX, SOURCE, Clients, Op, check
from tests.conftest import fresh_log
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
