"""The query process's kept reads on a real server, projector and doorbell: a commit
heard makes the next read fresh; a read-your-writes wait sees its write even when the
commit's news was not heard; a revocation heard ends a kept grant, and one not heard
ends it within the grant's age. The bounds themselves: `tests/unit/test_read_caches.py`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar

from dateline.query.app import create_app
from dateline.query.reader import Reader
from dateline.store.log import Log
from dateline.store.readers import Readers
from tests.factories import encode, update
from tests.integration.serving import serve
from tests.integration.test_projector import projector, settings, settle

STORY = "cache-story"


def said(n: int) -> bytes:
    data = {"statement": f"s{n}", "speaker": "Kim Jong Un", "text": f"Remark {n}"}
    return encode(
        update(
            "dateline.statement.made",
            id=f"cache-{n}",
            subject=STORY,
            time=f"2019-02-28T1{n}:00:00+07:00",
            data=data,
        )
    )


@pytest.fixture
async def served(log: Log, redis_url: str) -> AsyncIterator[dict[str, Any]]:
    app = await projector(log, redis_url)
    await log.append([said(1)])
    await settle(app)
    token = await Readers(log.redis, log.keys.prefix).add("desk", "reader")
    query: Litestar = create_app(settings(log), redis_url, poll_s=0.2)
    async with serve(query) as base:
        reader: Reader = query.state.reader
        for _ in range(100):  # the doorbell's subscription is made
            if reader.cache.live:
                break
            await asyncio.sleep(0.02)
        assert reader.cache.live
        reader.cache.max_age_s = 60.0  # only the news drops a read, in these tests
        query.state.readers.known.max_age_s = 60.0
        http = httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {token}"})
        async with http:
            yield {"projector": app, "query": query, "reader": reader, "http": http}
    await app.client.aclose()


async def version(http: httpx.AsyncClient, query: str = "") -> int:
    r = await http.get(f"/v1/stories/{STORY}{query}")
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


async def test_a_read_is_kept_and_a_commit_heard_makes_the_next_fresh(
    log: Log, served: dict[str, Any]
) -> None:
    http, reader = served["http"], served["reader"]
    assert await version(http) == 1
    hits = reader.cache.hits
    assert await version(http) == 1
    assert reader.cache.hits == hits + 1  # the second read went nowhere near Redis
    await log.append([said(2)])
    await settle(served["projector"])
    deadline = time.monotonic() + 2.0
    while await version(http) != 2:  # the commit's news on its way: microseconds
        assert time.monotonic() < deadline, "the commit was not heard"
        await asyncio.sleep(0.01)


async def test_a_read_your_writes_wait_sees_its_write_when_the_news_was_not_heard(
    log: Log, served: dict[str, Any]
) -> None:
    http, reader = served["http"], served["reader"]
    reader.doorbell.listeners.remove(reader.cache.heard)  # its news lost, say
    assert await version(http) == 1
    [done] = await log.append([said(2)])
    await settle(served["projector"])
    await asyncio.sleep(0.3)
    assert await version(http) == 1  # kept, and the news of the commit never came
    assert await version(http, f"?min_position={done.position}") == 2
    assert await version(http) == 2  # and what it read is kept now


async def test_a_revocation_heard_ends_a_kept_grant(log: Log, served: dict[str, Any]) -> None:
    http = served["http"]
    assert await version(http) == 1
    assert served["query"].state.readers.known._known  # the grant is kept now
    await Readers(log.redis, log.keys.prefix).revoke("desk")
    deadline = time.monotonic() + 2.0
    while (await http.get(f"/v1/stories/{STORY}")).status_code != 401:
        assert time.monotonic() < deadline, "the revocation was not heard"
        await asyncio.sleep(0.01)


async def test_a_revocation_not_heard_ends_a_kept_grant_within_its_age(
    log: Log, served: dict[str, Any]
) -> None:
    http, known = served["http"], served["query"].state.readers.known
    served["reader"].doorbell.listeners.remove(known.heard)
    # The revocation and the read after it take milliseconds; on a loaded machine, a few
    # hundred: the age leaves them room.
    known.max_age_s = 1.5
    assert await version(http) == 1
    await Readers(log.redis, log.keys.prefix).revoke("desk")
    assert (await http.get(f"/v1/stories/{STORY}")).status_code == 200  # kept, not heard
    await asyncio.sleep(1.6)
    assert (await http.get(f"/v1/stories/{STORY}")).status_code == 401


async def test_an_item_falling_overdue_shows_while_the_read_is_kept(
    log: Log, served: dict[str, Any]
) -> None:
    http, reader = served["http"], served["reader"]
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    [done] = await log.append(
        [
            encode(
                update(
                    "dateline.schedule.announced",
                    id="cache-vote",
                    subject=STORY,
                    time="2019-02-28T09:00:00+07:00",
                    data={"item": "vote", "title": "The vote", "starts_at": soon.isoformat()},
                )
            )
        ]
    )
    await settle(served["projector"])

    async def overdue(query: str = "") -> bool:
        r = await http.get(f"/v1/stories/{STORY}{query}")
        return bool(r.json()["schedule"]["vote"]["overdue"])

    assert not await overdue(f"?min_position={done.position}")
    hits = reader.cache.hits
    assert not await overdue()  # from what is kept, rendered once
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
    assert await overdue()  # no commit since: the rendering knew when it would go stale
    assert reader.cache.hits > hits


async def test_a_list_is_kept_until_any_commit_is_heard(log: Log, served: dict[str, Any]) -> None:
    http = served["http"]

    async def listed() -> list[str]:
        r = await http.get("/v1/stories?limit=10")
        assert r.status_code == 200
        return [s["id"] for s in r.json()["items"]]

    assert await listed() == [STORY]
    hits = served["reader"].cache.listing_hits
    first = await http.get("/v1/stories?limit=10")
    assert served["reader"].cache.listing_hits == hits + 1  # rendered once, kept
    again = await http.get("/v1/stories?limit=10", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304
    other = update("dateline.story.opened", id="cache-other", subject="cache-other")
    await log.append([encode(other)])
    await settle(served["projector"])
    deadline = time.monotonic() + 2.0
    while await listed() != ["cache-other", STORY]:  # another partition's commit, heard
        assert time.monotonic() < deadline, "the commit was not heard"
        await asyncio.sleep(0.01)


async def test_metrics_count_kept_reads_and_reads_from_redis(
    log: Log, served: dict[str, Any]
) -> None:
    http = served["http"]
    ops = await Readers(log.redis, log.keys.prefix).add("watch", "ops")

    async def count(kind: str, outcome: str) -> float:
        r = await http.get("/metrics", headers={"authorization": f"Bearer {ops}"})
        assert r.status_code == 200
        line = f'dateline_query_kept_reads_total{{kind="{kind}",outcome="{outcome}"}} '
        found = [x for x in r.text.splitlines() if x.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    hits, misses = await count("story", "hit"), await count("story", "miss")
    await version(http)
    await version(http)
    assert await count("story", "miss") >= misses + 1
    assert await count("story", "hit") >= hits + 1
