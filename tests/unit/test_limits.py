"""`bound_requests`: at most `limit` requests in progress, the rest in line, then a 503;
`rate_limited`: token buckets per token and per address, then a 429."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from dateline.web.limits import Buckets, bound_requests, rate_limited


class Slow:
    """An ASGI app that answers after `delay`, counting how many it works on at once."""

    def __init__(self, delay: float) -> None:
        self.delay, self.now, self.most, self.done = delay, 0, 0, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(self.delay)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok", "more_body": False})
            self.done += 1
        finally:
            self.now -= 1


async def call(app: Any, path: str = "/v1/stories/x") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    await app({"type": "http", "path": path}, receive, send)
    return sent


async def test_no_more_than_the_limit_at_once_and_every_request_answered() -> None:
    inner = Slow(0.01)
    app = bound_requests(limit=3)(inner)
    answers = await asyncio.gather(*(call(app) for _ in range(40)))
    assert inner.most == 3
    assert inner.done == 40
    assert {a[0]["status"] for a in answers} == {200}


async def test_a_request_that_waits_too_long_gets_a_503_that_says_why() -> None:
    inner = Slow(0.5)
    app = bound_requests(limit=1, wait_s=0.05)(inner)
    first, second = await asyncio.gather(call(app), call(app))
    assert first[0]["status"] == 200
    assert second[0]["status"] == 503
    headers = dict(second[0]["headers"])
    assert headers[b"retry-after"] == b"1"
    assert headers[b"content-type"] == b"application/problem+json"
    problem = msgspec.json.decode(second[1]["body"])
    assert problem["type"] == "urn:dateline:problem:busy"
    assert "1 requests at once" in problem["detail"]
    assert inner.done == 1


async def test_probes_and_live_streams_do_not_queue_behind_reads() -> None:
    inner = Slow(0.2)
    app = bound_requests(limit=1, wait_s=0.01)(inner)
    answers = await asyncio.gather(
        call(app), call(app, "/readyz"), call(app, "/v1/live"), call(app, "/v1/stories/x/live")
    )
    assert [a[0]["status"] for a in answers] == [200, 200, 200, 200]
    assert inner.most == 4


def test_a_bucket_lets_a_burst_through_then_the_rate() -> None:
    buckets = Buckets(rate=10, burst=20)
    assert [buckets.take("a", 0.0) for _ in range(20)] == [0.0] * 20
    assert buckets.take("a", 0.0) == pytest.approx(0.1)  # one token comes in 0.1 s
    assert buckets.take("b", 0.0) == 0.0  # another key has its own
    assert buckets.take("a", 0.1) == 0.0
    assert buckets.take("a", 0.1) > 0


async def limited_call(app: Any, client: str, token: str | None) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope = {"type": "http", "path": "/v1/updates", "client": (client, 1), "headers": headers}
    await app(scope, receive, send)
    return sent[0]


async def test_past_the_rate_a_token_or_an_address_gets_a_429_with_retry_after() -> None:
    app = rate_limited(rate=5, service="ingest")(Slow(0.0))  # bursts of 10
    by_one_token = [await limited_call(app, f"10.0.0.{n}", "t1") for n in range(11)]
    assert [m["status"] for m in by_one_token] == [200] * 10 + [429]
    assert dict(by_one_token[-1]["headers"])[b"retry-after"] == b"1"
    from_one_address = [await limited_call(app, "10.9.9.9", f"t{n + 2}") for n in range(11)]
    assert [m["status"] for m in from_one_address] == [200] * 10 + [429]
    assert (await limited_call(app, "10.8.8.8", "t99"))["status"] == 200  # others go on
    assert rate_limited(rate=0, service="ingest")(inner := Slow(0.0)) is inner  # 0: off


async def test_the_places_and_the_buckets_are_shared_by_every_app_they_wrap() -> None:
    """Litestar wraps each route apart: a limit is the process's, not a route's."""
    bound = bound_requests(limit=2)
    inner = Slow(0.01)
    a, b = bound(inner), bound(inner)  # two routes, one process
    await asyncio.gather(*(call(a) for _ in range(10)), *(call(b) for _ in range(10)))
    assert (inner.done, inner.most) == (20, 2)
    limit = rate_limited(rate=1, service="query")  # bursts of 2
    first, second = limit(Slow(0.0)), limit(Slow(0.0))
    statuses = [(await limited_call(app, "10.0.0.1", "t"))["status"] for app in (first, second)]
    assert statuses == [200, 200]
    assert (await limited_call(first, "10.0.0.1", "t"))["status"] == 429
    assert (await limited_call(second, "10.0.0.1", "t"))["status"] == 429
