"""Who may read what (issue 19): every route against every kind of credential.

No token, a wrong one, a revoked one, a feed's, a reader limited to `hanoi-`, an editor
and ops: the status each gets, and no story of another scope in any body or event. A
story outside a reader's prefixes answers exactly as one with no updates.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from dateline.ingest.credentials import Credentials
from dateline.projector.app import Projector
from dateline.query.app import create_app
from dateline.store.log import Log
from dateline.store.readers import Readers
from tests.factories import encode, update
from tests.integration.serving import serve
from tests.integration.test_projector import projector, settings, settle
from tests.projection_helpers import HANOI

HANOI_ID, COHEN = "hanoi-summit-2019", "cohen-hearing-2019"
ECHO = re.compile(rf"story '{COHEN}' ha[sd] no updates")
RECALLED_TEXT = "If I’m not willing to do that"
BEFORE_RECALL = 12  # Hanoi's version after the quote (its 10th update), before the recall
FIXED_TEXT = "If I were not willing, I would not be here"
FIX_NOTE = "Interpreter wording: not willing, not be here"

STORY_ROUTES = [
    "/v1/stories/{s}",
    "/v1/stories/{s}?as_of=2030-01-01T00:00:00%2B00:00",
    "/v1/stories/{s}?at_version=3",
    "/v1/stories/{s}/timeline",
    "/v1/stories/{s}/timeline?at_version=3",
    "/v1/stories/{s}/history",
    "/v1/stories/{s}/history?at_version=3",
    "/v1/stories/{s}/jsonld",
    "/v1/stories/{s}/timelinejs",
]
ACROSS = [
    "/v1/stories",
    "/v1/stories?status=developing",
    "/v1/stories?overdue=true",
    "/v1/speakers/Michael%20Cohen/statements",
    "/v1/speakers/Kim%20Jong%20Un/statements",
    "/v1/schedule",
    "/v1/me",
]
OPS = ["/v1/status", "/v1/status/lag", "/metrics"]
PUBLIC = ["/healthz", "/readyz", "/v1/openapi.json", "/", "/app.js", "/signin.html"]
ALL = [r.format(s=s) for r in STORY_ROUTES for s in (HANOI_ID, COHEN)] + ACROSS + OPS


@pytest.fixture
async def world(log: Log, redis_url: str) -> AsyncIterator[dict[str, Any]]:
    """The Hanoi seed projected, a statement of it recalled as erroneous, the readers."""
    app: Projector = await projector(log, redis_url)
    await log.append([x for x in HANOI.read_bytes().splitlines() if x.strip()])
    recall = update(
        "dateline.retraction.issued",
        id="wire-a-recall",
        source="urn:feed:wire-a",
        time="2019-02-28T18:00:00+07:00",
        data={"retracts": "wire-a-0010", "status": "canceled", "reason": "misquoted"},
    )
    # Corrected before its recall: the correction's changes carry the quote too.
    fix = update(
        "dateline.correction.issued",
        id="wire-a-fix",
        source="urn:feed:wire-a",
        time="2019-02-28T17:00:00+07:00",
        data={"corrects": "wire-a-0010", "changes": {"text": FIXED_TEXT}, "note": FIX_NOTE},
    )
    await log.append([encode(fix), encode(recall)])
    await settle(app)
    prefix = log.keys.prefix
    readers = Readers(log.redis, prefix)
    tokens = {
        "scoped": await readers.add("desk", "reader", ["hanoi-"]),
        "reader": await readers.add("everyone", "reader"),
        "editor": await readers.add("editor", "editor"),
        "ops": await readers.add("ops", "ops"),
        "revoked": await readers.add("gone", "ops"),
        "wrong": "dr_" + "x" * 43,
        "feed": await Credentials(log.redis, prefix).add("wire-z", "urn:feed:z"),
    }
    await readers.revoke("gone")
    async with serve(create_app(settings(log), redis_url, poll_s=0.2)) as base:
        yield {"base": base, "tokens": tokens}
    await app.client.aclose()


def headers(world: dict[str, Any], who: str) -> dict[str, str]:
    return {} if who == "none" else {"authorization": f"Bearer {world['tokens'][who]}"}


def expected(who: str, path: str) -> int:
    if path.startswith(("/v1/status", "/metrics")):
        return {"ops": 200, "none": 401, "wrong": 401, "revoked": 401, "feed": 401}.get(who, 403)
    if who in ("none", "wrong", "revoked", "feed"):
        return 401
    if who == "scoped" and COHEN in path:
        return 404
    return 200


@pytest.mark.parametrize(
    "who", ["none", "wrong", "revoked", "feed", "scoped", "reader", "editor", "ops"]
)
async def test_every_route_answers_each_credential_as_the_table_says(
    world: dict[str, Any], who: str
) -> None:
    async with httpx.AsyncClient(base_url=world["base"], headers=headers(world, who)) as http:
        for path in ALL:
            r = await http.get(path)
            assert r.status_code == expected(who, path), (who, path, r.text[:300])
            if r.status_code == 401:
                assert r.headers["www-authenticate"] == 'Bearer realm="dateline"'
                assert r.headers["content-type"].startswith("application/problem+json")
            if who == "scoped":
                # The id asked for, echoed by a 404, is the only mention of it.
                assert COHEN not in ECHO.sub("", r.text), path
        for path in PUBLIC:
            assert (await http.get(path)).status_code == 200, path


async def test_a_story_outside_the_scope_answers_as_one_that_does_not_exist(
    world: dict[str, Any],
) -> None:
    scoped = headers(world, "scoped")
    ops = headers(world, "ops")
    async with httpx.AsyncClient(base_url=world["base"]) as http:
        for route in STORY_ROUTES:
            hidden = await http.get(route.format(s=COHEN), headers=scoped)
            absent = await http.get(route.format(s="cohen-nothing-here"), headers=ops)
            assert hidden.status_code == absent.status_code == 404, route
            assert hidden.headers == absent.headers or _same_but_length(hidden, absent)
            assert hidden.json() == {
                **absent.json(),
                "detail": absent.json()["detail"].replace("cohen-nothing-here", COHEN),
            }, route
            # An ETag of the story cannot be used to learn it exists either.
            tagged = await http.get(route.format(s=COHEN), headers=ops)
            etag = tagged.headers.get("etag")
            if etag:
                again = await http.get(
                    route.format(s=COHEN), headers={**scoped, "if-none-match": etag}
                )
                assert again.status_code == 404


def _same_but_length(a: httpx.Response, b: httpx.Response) -> bool:
    drop = {"content-length", "date"}
    return {k: v for k, v in a.headers.items() if k not in drop} == {
        k: v for k, v in b.headers.items() if k not in drop
    }


async def test_a_reader_sees_a_recalled_update_as_recalled_editors_see_it_whole(
    world: dict[str, Any],
) -> None:
    async with httpx.AsyncClient(base_url=world["base"]) as http:
        for path in (
            f"/v1/stories/{HANOI_ID}/history",
            f"/v1/stories/{HANOI_ID}/timeline",
            f"/v1/stories/{HANOI_ID}/timelinejs",
            f"/v1/stories/{HANOI_ID}/jsonld",
            f"/v1/stories/{HANOI_ID}?as_of=2030-01-01T00:00:00%2B00:00",
            f"/v1/stories/{HANOI_ID}/history?at_version={BEFORE_RECALL}",
            f"/v1/stories/{HANOI_ID}?at_version={BEFORE_RECALL}",
            f"/v1/stories/{HANOI_ID}/timeline?at_version={BEFORE_RECALL}",
            f"/v1/stories/{HANOI_ID}",
        ):
            for who in ("reader", "scoped"):
                r = await http.get(path, headers=headers(world, who))
                assert r.status_code == 200, path
                for text in (RECALLED_TEXT, FIXED_TEXT, FIX_NOTE):
                    assert text not in r.text, (who, path, text)
            whole = await http.get(path, headers=headers(world, "editor"))
            if "history" in path or "at_version" in path:
                assert RECALLED_TEXT in whole.text, path
            if path.endswith("/history"):
                assert FIXED_TEXT in whole.text
            if "at_version" not in path:
                assert FIX_NOTE in whole.text, path  # its note, for the audit
        history = (
            await http.get(f"/v1/stories/{HANOI_ID}/history", headers=headers(world, "reader"))
        ).json()
        for recalled in ("wire-a-0010", "wire-a-fix"):
            [stub] = [r for r in history if r["id"] == recalled]
            assert stub["recalled"] is True
            assert stub["recalledby"] == "wire-a-recall"
            assert "data" not in stub
        then = (
            await http.get(
                f"/v1/stories/{HANOI_ID}?at_version={BEFORE_RECALL}",
                headers=headers(world, "reader"),
            )
        ).json()
        assert "kim-willing" not in then["statements"]
        assert {"id": "wire-a-0010", "status": "canceled"}.items() <= then["hidden"][0].items()


async def test_live_streams_keep_to_the_scope(world: dict[str, Any]) -> None:
    async def first_events(path: str, who: str, n: int) -> list[str]:
        events: list[str] = []
        async with (
            httpx.AsyncClient(base_url=world["base"], timeout=10) as http,
            http.stream("GET", path, headers=headers(world, who)) as r,
        ):
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    events.append(line)
                    if len(events) >= n:
                        break
        return events

    # From the log's start: every update of every story, but only hanoi's for the desk.
    start = "0-0," * 3 + "0-0"
    scoped = await first_events(f"/v1/live?last_event_id={start}", "scoped", 5)
    assert all(HANOI_ID in e and COHEN not in e for e in scoped)
    # Resumed from the start by a reader: the recalled quote's summary is not in it.
    replayed = await first_events(f"/v1/live?last_event_id={start}", "reader", 31)
    updates = [msgspec.json.decode(e[5:]) for e in replayed]
    [recalled] = [u for u in updates if u["id"] == "wire-a-0010"]
    assert (recalled["summary"], recalled["recalled"]) == ("recalled", True)
    assert all(RECALLED_TEXT not in e and FIXED_TEXT not in e for e in replayed)
    audited = await first_events(f"/v1/live?last_event_id={start}", "editor", 30)
    assert any(RECALLED_TEXT in e for e in audited)
    index = await first_events("/v1/live", "scoped", 1)
    assert HANOI_ID in index[0] and COHEN not in index[0]
    everyone = await first_events("/v1/live", "ops", 1)
    assert COHEN in everyone[0]
    # A story stream resumed from its start: the recalled quote comes as recalled.
    story = f"/v1/stories/{HANOI_ID}/live?last_event_id=0:0-0"
    pushed = [msgspec.json.decode(e[5:]) for e in await first_events(story, "reader", 27)]
    [recalled] = [e for e in pushed if e.get("id") == "wire-a-0010"]
    assert recalled["recalled"] is True and "record" not in recalled
    [fix] = [e for e in pushed if e.get("id") == "wire-a-fix"]
    assert fix["recalled"] is True and "record" not in fix
    for text in (RECALLED_TEXT, FIXED_TEXT, FIX_NOTE):
        assert all(text not in msgspec.json.encode(e).decode() for e in pushed), text
    async with (
        httpx.AsyncClient(base_url=world["base"], timeout=3) as http,
        http.stream("GET", f"/v1/stories/{COHEN}/live", headers=headers(world, "scoped")) as r,
    ):
        assert r.status_code == 200  # as a story with no updates: open, and quiet
        with pytest.raises(httpx.ReadTimeout):
            await anext(r.aiter_lines())


async def test_revoking_a_reader_ends_its_token_at_the_next_request(
    log: Log, world: dict[str, Any]
) -> None:
    auth = headers(world, "editor")
    async with httpx.AsyncClient(base_url=world["base"], headers=auth) as http:
        assert (await http.get("/v1/stories")).status_code == 200
        await Readers(log.redis, log.keys.prefix).revoke("editor")
        assert (await http.get("/v1/stories")).status_code == 401


async def test_a_session_signs_in_once_and_ends_on_sign_out_or_revocation(
    log: Log, world: dict[str, Any]
) -> None:
    readers = Readers(log.redis, log.keys.prefix)
    base = world["base"]
    async with httpx.AsyncClient(base_url=base) as browser:
        code = await readers.sign_in_link("everyone")
        first = await browser.get(f"/v1/session/link?code={code}&to=%23/schedule")
        assert (first.status_code, first.headers["location"]) == (303, "/#/schedule")
        cookie = first.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
        assert (await browser.get("/v1/me")).json()["name"] == "everyone"
        again = await browser.get(f"/v1/session/link?code={code}")
        assert again.headers["location"] == "/signin.html?expired"  # once
        elsewhere = await readers.sign_in_link("everyone")
        off = await browser.get(f"/v1/session/link?code={elsewhere}&to=https://evil.example")
        assert off.headers["location"] == "/"  # a link never sends a browser elsewhere
        assert (await browser.post("/v1/session/end")).status_code == 303
        assert (await browser.get("/v1/me")).status_code == 401
    async with httpx.AsyncClient(base_url=base) as browser:
        token = world["tokens"]["ops"]
        signed = await browser.post("/v1/session", data={"token": token})
        assert (signed.status_code, signed.headers["location"]) == (303, "/")
        assert (await browser.get("/v1/status")).status_code == 200
        forged = await browser.post(
            "/v1/session", data={"token": token}, headers={"origin": "https://evil.example"}
        )
        assert forged.status_code == 403  # a form posted from another site
        wrong = await browser.post("/v1/session", data={"token": "dr_nope"})
        assert wrong.headers["location"] == "/signin.html?failed"
        await readers.revoke("ops")
        assert (await browser.get("/v1/me")).status_code == 401  # revoked: its sessions end
