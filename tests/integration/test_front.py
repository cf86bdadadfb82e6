"""Story reads answered in front of Litestar (`query/front.py`) on a real server and
projector: every answer equals, status, headers and bytes, what Litestar's route gives
the same request; those it holds are answered there, the rest left to Litestar; and
the process's guards (rate, timing) count them as any other read."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from prometheus_client import REGISTRY

from dateline.query.app import create_app
from dateline.query.front import KeptReads
from dateline.query.routes.stories import STORY_ROUTE
from dateline.store.log import Log
from tests.factories import encode, update
from tests.integration.serving import serve
from tests.integration.test_projector import projector, settings, settle
from tests.limiter_clock import LimiterClock
from tests.readers import bearer

HANOI = Path(__file__).resolve().parents[2] / "examples" / "hanoi-summit-2019.ndjson"
STORY = "hanoi-summit-2019"
RECALLED = "front-recalled"
UNSTABLE = {"date", "server"}


def _recalled() -> list[bytes]:
    """A statement, a correction of it, then a retraction that recalls it: a reader
    without the audit right sees neither it nor the correction's note."""
    said = {"statement": "s1", "speaker": "A Spokesman", "text": "Talks went well."}
    return [
        encode(update("dateline.story.opened", subject=RECALLED, id="fr-1")),
        encode(update("dateline.statement.made", subject=RECALLED, id="fr-2", data=said)),
        encode(
            update(
                "dateline.correction.issued",
                subject=RECALLED,
                id="fr-3",
                data={"corrects": "fr-2", "changes": {"text": "Talks went badly."}, "note": "n"},
            )
        ),
        encode(
            update(
                "dateline.retraction.issued",
                subject=RECALLED,
                id="fr-4",
                data={"retracts": "fr-2", "status": "canceled", "reason": "Never said"},
            )
        ),
    ]


async def _live(app: Litestar) -> None:
    for _ in range(200):  # the doorbell's subscription is made: reads are kept from now
        if app.state.reader.cache.live:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the query process never heard the doorbell")


@contextlib.asynccontextmanager
async def _served(app: Litestar) -> AsyncIterator[str]:
    async with serve(app) as base:
        await _live(app)
        app.state.reader.cache.max_age_s = 60.0  # only a commit drops a read, here
        app.state.readers.known.max_age_s = 60.0
        yield base


@pytest.fixture
async def both(log: Log, redis_url: str) -> AsyncIterator[dict[str, Any]]:
    """The query app as served, and the same app with every read through Litestar."""
    folding = await projector(log, redis_url)
    await log.append([x for x in HANOI.read_bytes().splitlines() if x.strip()])
    await log.append(_recalled())
    await settle(folding)
    kept = create_app(settings(log), redis_url, poll_s=0.2)
    plain = create_app(settings(log), redis_url, poll_s=0.2, kept_reads=False)
    assert isinstance(kept.asgi_handler, KeptReads)
    assert not isinstance(plain.asgi_handler, KeptReads)
    async with _served(kept) as fast, _served(plain) as routed, httpx.AsyncClient() as http:
        yield {"kept": kept, "fast": fast, "routed": routed, "http": http, "folding": folding}
    await folding.client.aclose()


async def hanoi_folded(log: Log, redis_url: str) -> dict[str, str]:
    """The Hanoi story in the log and its read models; an ops reader's headers."""
    folding = await projector(log, redis_url)
    await log.append([x for x in HANOI.read_bytes().splitlines() if x.strip()])
    await settle(folding)
    await folding.client.aclose()
    return await bearer(redis_url, log.keys.prefix)


def _seen(r: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(k, v) for k, v in r.headers.multi_items() if k not in UNSTABLE]
    return r.status_code, headers, r.content


async def test_every_answer_is_the_route_s_and_those_held_are_answered_in_front(
    log: Log, redis_url: str, both: dict[str, Any]
) -> None:
    http, front = both["http"], both["kept"].asgi_handler
    prefix = log.keys.prefix
    ops = await bearer(redis_url, prefix)
    desk = await bearer(redis_url, prefix, "reader")
    scoped = await bearer(redis_url, prefix, "reader", ["front-"])
    tag = (await http.get(f"{both['routed']}/v1/stories/{STORY}", headers=ops)).headers["etag"]
    held = [  # (path, headers): answered in front once the route has rendered them
        (f"/v1/stories/{STORY}", ops),
        (f"/v1/stories/{RECALLED}", ops),
        (f"/v1/stories/{RECALLED}", desk),  # another rendering: no audit right
        (f"/v1/stories/{RECALLED}", scoped),
        (f"/v1/stories/{STORY}", {**ops, "If-None-Match": tag}),  # 304
        (f"/v1/stories/{STORY}", {**ops, "If-None-Match": f'"x", W/{tag}'}),  # 304
        (f"/v1/stories/{STORY}", {**ops, "If-None-Match": "*"}),  # 304
        (f"/v1/stories/{STORY}", {**ops, "If-None-Match": '"stale"'}),
        (f"/v1/stories/{STORY}", {**ops, "Origin": "https://elsewhere.example"}),  # CORS off
        (f"/v1/stories/{STORY}", {"authorization": "bearer " + ops["authorization"][7:]}),
    ]
    routed = [  # left to Litestar, whatever is held
        (f"/v1/stories/{STORY}", scoped),  # outside its prefixes: 404
        (f"/v1/stories/{STORY}?at_version=3", ops),
        (f"/v1/stories/{STORY}/timeline", ops),
        (f"/v1/stories/{STORY}/", ops),
        ("/v1/stories/no-such-story", ops),
        ("/v1/stories/Not_An_Id", ops),
        (f"/v1/stories/{STORY}", {}),  # 401
        (f"/v1/stories/{STORY}", {"Authorization": "Basic eDp5"}),  # 401
        (f"/v1/stories/{STORY}", {"Authorization": "Bearer dr_unknown"}),  # 401
        (f"/v1/stories/{STORY}", [*ops.items(), ("authorization", "Bearer dr_unknown")]),
        ("/v1/stories", ops),
    ]
    for cases, in_front in ((held, True), (routed, False)):
        for path, headers in cases:
            # Twice each: the first read of a rendering fills what is held.
            for _ in range(2):
                before = front.answered
                fast = await http.get(both["fast"] + path, headers=headers)
                routed_answer = await http.get(both["routed"] + path, headers=headers)
            assert _seen(fast) == _seen(routed_answer), (path, headers)
            assert front.answered == before + in_front, (path, headers, fast.status_code)


async def test_a_commit_heard_sends_the_next_read_to_the_route_and_it_is_held_again(
    log: Log, redis_url: str, both: dict[str, Any]
) -> None:
    http, front, ops = (
        both["http"],
        both["kept"].asgi_handler,
        await bearer(redis_url, log.keys.prefix),
    )
    url = f"{both['fast']}/v1/stories/{RECALLED}"
    first = (await http.get(url, headers=ops)).json()["version"]
    await http.get(url, headers=ops)
    answered = front.answered
    said = {"statement": "s2", "speaker": "A Spokesman", "text": "More talks."}
    await log.append([encode(update("dateline.statement.made", subject=RECALLED, data=said))])
    await settle(both["folding"])
    for _ in range(200):  # the commit's news on its way
        if (await http.get(url, headers=ops)).json()["version"] == first + 1:
            break
        await asyncio.sleep(0.01)
    assert (await http.get(url, headers=ops)).json()["version"] == first + 1
    assert front.answered > answered  # held again once the route rendered the new state


async def test_reads_answered_in_front_count_against_the_rate_and_are_timed(
    log: Log, redis_url: str, limiter_clock: LimiterClock
) -> None:
    ops = await hanoi_folded(log, redis_url)
    app = create_app(dataclasses.replace(settings(log), rate_limit=3.0), redis_url, poll_s=0.2)
    labels = {"service": "query", "route": STORY_ROUTE, "status": "200"}
    timed = REGISTRY.get_sample_value("dateline_http_request_seconds_count", labels) or 0.0
    async with _served(app) as base, httpx.AsyncClient(headers=ops) as http:
        answers = [await http.get(f"{base}/v1/stories/{STORY}") for _ in range(7)]
        front = app.asgi_handler
        assert isinstance(front, KeptReads)
        assert [r.status_code for r in answers] == [200] * 6 + [429]  # bursts of 6
        assert front.answered >= 5  # the first read rendered it; the rest were held
        assert answers[-1].headers["x-frame-options"] == "DENY"  # Litestar's before_send
        # The same process's buckets for every route: this token has none left.
        assert (await http.get(f"{base}/v1/stories")).status_code == 429
    after = REGISTRY.get_sample_value("dateline_http_request_seconds_count", labels)
    assert after == timed + 6


async def test_with_cors_on_a_read_with_an_origin_is_left_to_litestar(
    log: Log, redis_url: str
) -> None:
    """CORS headers are Litestar's to add: such a read is never answered in front."""
    ops = await hanoi_folded(log, redis_url)
    listed = dataclasses.replace(settings(log), cors_origins=("https://desk.example",))
    app = create_app(listed, redis_url, poll_s=0.2)
    front = app.asgi_handler
    assert isinstance(front, KeptReads)
    async with _served(app) as base, httpx.AsyncClient(headers=ops) as http:
        url = f"{base}/v1/stories/{STORY}"
        answers = [
            await http.get(url, headers={"Origin": "https://desk.example"}) for _ in range(3)
        ]
        assert [r.headers.get("access-control-allow-origin") for r in answers] == [
            "https://desk.example"
        ] * 3
        assert front.answered == 0
        await http.get(url)  # no Origin: held by now, answered in front
        assert front.answered == 1
