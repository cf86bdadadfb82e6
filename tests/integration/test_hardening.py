"""The security probe's findings on the HTTP surface (issue 19, item 6), each a
regression test: headers a browser obeys, the API docs served from here, CORS off
unless listed, the JSON-LD base, and a request's head bounded before any app code."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time

import httpx
import pytest

from dateline.query.app import create_app
from dateline.store.log import Log
from dateline.web import server
from tests.integration.serving import serve
from tests.integration.test_projector import settings
from tests.limiter_clock import LimiterClock
from tests.readers import bearer


async def test_every_answer_carries_the_headers_a_browser_obeys(log: Log, redis_url: str) -> None:
    async with serve(create_app(settings(log), redis_url)) as base, httpx.AsyncClient() as http:
        for path in ("/", "/signin.html", "/docs.html", "/v1/stories", "/healthz"):
            r = await http.get(base + path)
            csp = r.headers["content-security-policy"]
            assert "script-src 'self';" in csp and "unsafe-inline" not in csp, path
            assert "frame-ancestors 'none'" in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["referrer-policy"] == "no-referrer"
        auth = await bearer(redis_url, log.keys.prefix)
        # Reads answered with their head prebuilt (`web/ready.py`), a 304 too.
        listing = await http.get(f"{base}/v1/stories", headers=auth)
        again = await http.get(
            f"{base}/v1/stories", headers={**auth, "If-None-Match": listing.headers["etag"]}
        )
        for r in (listing, again):
            assert r.headers["x-frame-options"] == "DENY", r.status_code
            assert r.headers["cache-control"] == "no-cache"
        assert (listing.status_code, again.status_code, again.content) == (200, 304, b"")
        assert listing.headers["content-type"] == "application/json"
        assert int(listing.headers["content-length"]) == len(listing.content)
        for page in ("/", "/signin.html", "/docs.html"):
            html = (await http.get(base + page)).text
            assert "<script>" not in html and "onload=" not in html  # no inline script
            assert not re.search(r"(src|href)=\"https?://", html), page  # nothing from a CDN


async def test_the_api_docs_are_served_from_here(log: Log, redis_url: str) -> None:
    async with serve(create_app(settings(log), redis_url)) as base, httpx.AsyncClient() as http:
        docs = await http.get(f"{base}/v1/docs")
        assert (docs.status_code, docs.headers["location"]) == (303, "/docs.html")
        script = await http.get(f"{base}/v1/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200
        assert "SwaggerUIBundle" in script.text
        assert (await http.get(f"{base}/v1/docs/assets/swagger-ui.css")).status_code == 200


async def test_cors_is_off_unless_origins_are_listed(log: Log, redis_url: str) -> None:
    preflight = {
        "origin": "https://desk.example",
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
    }
    auth = await bearer(redis_url, log.keys.prefix)
    async with serve(create_app(settings(log), redis_url)) as base, httpx.AsyncClient() as http:
        r = await http.options(f"{base}/v1/stories", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = await http.get(f"{base}/v1/stories", headers={**auth, "origin": "https://desk.example"})
        assert "access-control-allow-origin" not in r.headers
    listed = dataclasses.replace(settings(log), cors_origins=("https://desk.example",))
    async with serve(create_app(listed, redis_url)) as base, httpx.AsyncClient() as http:
        r = await http.options(f"{base}/v1/stories", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://desk.example"
        other = await http.options(
            f"{base}/v1/stories", headers={**preflight, "origin": "https://evil.example"}
        )
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


async def _raw(base: str, head: bytes, read_for: float = 5.0) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        await writer.drain()
        got = b""
        deadline = time.monotonic() + read_for
        while time.monotonic() < deadline:
            chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            if not chunk:
                return got  # closed by the server
            got += chunk
        raise AssertionError(f"the server kept the connection open: {got[:200]!r}")
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ([f"x-h{n}: v" for n in range(20_000)], "too many"),
        ([f"x-big: {'v' * 40_000}"], "too big"),
    ],
)
async def test_a_request_head_past_the_limits_gets_a_431_before_any_app_code(
    log: Log, redis_url: str, headers: list[str], why: str
) -> None:
    async with serve(create_app(settings(log), redis_url)) as base:
        head = "GET /v1/stories HTTP/1.1\r\nhost: x\r\n" + "".join(f"{h}\r\n" for h in headers)
        got = await _raw(base, head.encode() + b"\r\n")
        assert got.startswith(b"HTTP/1.1 431 "), (why, got[:200])
        assert b'"status":431' in got
        # The process serves on.
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{base}/healthz")).status_code == 200


async def test_a_head_sent_too_slowly_loses_its_connection(
    log: Log, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "HEAD_TIMEOUT_S", 0.5)
    async with serve(create_app(settings(log), redis_url)) as base:
        started = time.monotonic()
        got = await _raw(base, b"GET /v1/stories HTTP/1.1\r\nhost: x\r\nx-slow: ", read_for=5.0)
        assert got == b""
        assert time.monotonic() - started < 3.0
        # Nothing sent at all after connecting: the same.
        assert await _raw(base, b"", read_for=5.0) == b""


async def test_a_path_with_a_nul_is_a_400_not_a_500(log: Log, redis_url: str) -> None:
    async with serve(create_app(settings(log), redis_url)) as base, httpx.AsyncClient() as http:
        for path in ("/%00", "/v1/stories/%00x", "/app.js%00"):
            r = await http.get(base + path)
            assert r.status_code == 400, path
            assert r.json()["type"] == "urn:dateline:problem:bad-path"


async def test_past_the_rate_ingest_and_query_answer_429_with_retry_after(
    log: Log, redis_url: str, limiter_clock: LimiterClock
) -> None:
    from dateline.ingest.app import create_app as ingest_app  # noqa: PLC0415

    slow = dataclasses.replace(settings(log), rate_limit=2.0)  # bursts of 4
    auth = await bearer(redis_url, log.keys.prefix)
    for app in (ingest_app(slow, redis_url), create_app(slow, redis_url)):
        async with serve(app) as base, httpx.AsyncClient(headers=auth) as http:
            asked = [http.get(f"{base}/v1/openapi.json") for _ in range(5)]
            answers = await asyncio.gather(*asked)
            assert sorted(r.status_code for r in answers) == [200] * 4 + [429]
            refused = next(r for r in answers if r.status_code == 429)
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["type"] == "urn:dateline:problem:rate-limited"
            assert (await http.get(f"{base}/readyz")).status_code == 200  # probes: never
            limiter_clock.now += 0.5  # a token at 2 a second
            assert (await http.get(f"{base}/v1/openapi.json")).status_code == 200


async def test_the_rate_is_the_process_s_whatever_the_route(
    log: Log, redis_url: str, limiter_clock: LimiterClock
) -> None:
    """Litestar builds an app's middleware once for each route: buckets made there were
    each route's own, and a client past its rate on one route was let in on the next."""
    from dateline.ingest.app import create_app as ingest_app  # noqa: PLC0415

    slow = dataclasses.replace(settings(log), rate_limit=2.0)  # bursts of 4
    auth = await bearer(redis_url, log.keys.prefix)
    services = (
        (ingest_app(slow, redis_url), "POST", "/v1/updates"),
        (create_app(slow, redis_url), "GET", "/v1/stories/hanoi-summit-2019"),
    )
    for app, method, other in services:
        async with serve(app) as base, httpx.AsyncClient(headers=auth) as http:
            asked = [http.get(f"{base}/v1/openapi.json") for _ in range(4)]
            assert [r.status_code for r in await asyncio.gather(*asked)] == [200] * 4
            refused = await http.request(
                method, base + other, json=[] if method == "POST" else None
            )
            assert refused.status_code == 429, refused.text
