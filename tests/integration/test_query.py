"""The query API in process, on a real server, against read models the projector wrote."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import types
from collections.abc import AsyncIterator
from typing import Any, NoReturn, cast

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from litestar.openapi.spec import OpenAPI

from dateline.domain.overdue import OPEN
from dateline.domain.positions import Cursor, Position
from dateline.projector.app import Projector
from dateline.projector.ops import redrive
from dateline.projector.replay import drop_version, rebuild_all
from dateline.query import live
from dateline.query import reader as reads
from dateline.query.app import create_app
from dateline.query.paging import Place
from dateline.query.reader import ONE_TRIP, Reader
from dateline.store.doorbell import Doorbell
from dateline.store.log import Log
from dateline.store.readmodels import (
    BOARDS_BY_TIME,
    OWN_STATEMENTS,
    SHAPE,
    ReadModels,
    without_timeline,
)
from tests.factories import encode, update
from tests.integration.serving import serve
from tests.integration.test_projector import failing_on, projector, rebuilt, settings, settle
from tests.models_help import members, newest_first, zset_all
from tests.projection_helpers import HANOI, HANOI_UPDATES, HANOI_VERSION, hanoi_version_of
from tests.raw import data
from tests.readers import bearer

STORY = "hanoi-summit-2019"


pytestmark = pytest.mark.cluster_too  # each server, and the local cluster


@pytest.fixture
async def app(log: Log, url: str) -> AsyncIterator[Projector]:
    app = await projector(log, url)
    yield app
    await app.client.aclose()


@pytest.fixture
async def api(log: Log, url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app under uvicorn in this event loop, so a test can project while a read waits."""
    auth = await bearer(url, log.keys.prefix)
    async with (
        serve(create_app(settings(log), url, poll_s=0.2)) as base,
        httpx.AsyncClient(base_url=base, timeout=30, headers=auth) as client,
    ):
        yield client


async def publish_hanoi(log: Log, app: Projector, upto: int | None = None) -> list[bytes]:
    lines = [x for x in HANOI.read_bytes().splitlines() if x.strip()][:upto]
    await log.append(lines)
    await settle(app)
    return lines


def neighbour_of(log: Log, story: str) -> str:
    """Another story of the same partition: its commit moves the partition's checkpoint."""
    return next(
        f"n{i}" for i in range(99) if log.keys.partition(f"n{i}") == log.keys.partition(story)
    )


async def flat(pages: AsyncIterator[list[live.Push]]) -> AsyncIterator[live.Push]:
    """A stream's events one by one; keepalives (empty pages) left out."""
    async for page in pages:
        for push in page:
            yield push


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a stored state, none of whose updates is parked, now: an
    item still to happen whose (2019) start has passed is overdue."""
    hidden = ("statement_keys", "statement_aliases", "order_key")
    schedule = {
        ref: {**item, "overdue": item["status"] in OPEN and item["starts_at"] is not None}
        for ref, item in doc["schedule"].items()
    }
    shown = {k: v for k, v in doc.items() if k not in hidden}
    return {**shown, "schedule": schedule, "parked_at": None}


async def test_reads_equal_a_rebuild_from_the_log(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    await publish_hanoi(log, app)
    await check_hanoi_reads(log, api)


async def check_hanoi_reads(log: Log, api: httpx.AsyncClient) -> None:
    """The story, its timeline and history, the index and the boards, as a rebuild has them."""
    state = await rebuilt(log, STORY)
    r = await api.get(f"/v1/stories/{STORY}")
    assert r.status_code == 200, r.text
    assert r.json() == public(msgspec.json.decode(msgspec.json.encode(without_timeline(state))))
    assert list(r.json()["statements"]) == list(state.statements)  # in the state's order
    r = await api.get(f"/v1/stories/{STORY}/timeline")
    assert r.json()["items"] == msgspec.to_builtins(state.timeline)
    history = (await api.get(f"/v1/stories/{STORY}/history")).json()
    assert [h["version"] for h in history] == list(range(1, HANOI_VERSION + 1))

    index = (await api.get("/v1/stories")).json()["items"]
    assert {e["id"] for e in index} == {STORY, "cohen-hearing-2019"}
    await check_hanoi_boards(api)


async def check_hanoi_boards(api: httpx.AsyncClient) -> None:
    """Across stories: the status filter, a speaker's statements, the board and a day of it."""
    concluded = (await api.get("/v1/stories", params={"status": "concluded"})).json()["items"]
    assert [(e["id"], e["outcome"]) for e in concluded] == [(STORY, "no_agreement")]
    said = (await api.get("/v1/speakers/SARAH SANDERS/statements")).json()["items"]
    assert [s["statement"]["statement"] for s in said] == [
        "sanders-constructive",
        "sanders-no-agreement",
    ]
    board = (await api.get("/v1/schedule")).json()["items"]
    assert {(b["story"], b["item"]["item"]) for b in board} >= {
        (STORY, "working-lunch"),
        (STORY, "press-conference"),
    }
    day2 = (
        await api.get(
            "/v1/schedule",
            params={"from": "2019-02-28T00:00:00+07:00", "to": "2019-02-28T23:59:00+07:00"},
        )
    ).json()["items"]
    assert "summit" not in {b["item"]["item"] for b in day2}  # it starts on the 27th
    assert "working-lunch" in {b["item"]["item"] for b in day2}


async def test_etag_answers_304_until_the_story_changes(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    await publish_hanoi(log, app, upto=5)
    first = await api.get(f"/v1/stories/{STORY}")
    tag = first.headers["etag"]
    again = await api.get(f"/v1/stories/{STORY}", headers={"If-None-Match": tag})
    assert (again.status_code, again.content) == (304, b"")
    await log.append([msgspec.json.encode(update("dateline.story.concluded", subject=STORY))])
    await settle(app)
    changed = await api.get(f"/v1/stories/{STORY}", headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != tag
    assert changed.json()["status"] == "concluded"


async def test_as_of_and_at_version_show_what_the_desk_knew(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    await publish_hanoi(log, app)
    cut = hanoi_version_of("wire-a-0012")  # the lunch is cut
    before = (await api.get(f"/v1/stories/{STORY}", params={"at_version": cut - 1})).json()
    after = (await api.get(f"/v1/stories/{STORY}", params={"at_version": cut})).json()
    assert before["schedule"]["working-lunch"]["status"] == "scheduled"
    assert after["schedule"]["working-lunch"]["status"] == "cancelled"
    assert after["version"] == cut
    tl = (await api.get(f"/v1/stories/{STORY}/timeline", params={"at_version": 3})).json()
    assert [e["version"] for e in tl["items"]] == [1, 2, 3]
    history = await log.read_story(STORY)
    recorded = history[0].recordedtime
    assert recorded is not None
    then = (await api.get(f"/v1/stories/{STORY}", params={"as_of": recorded.isoformat()})).json()
    assert then["version"] == sum(1 for u in history if u.recordedtime == recorded)
    r = await api.get(f"/v1/stories/{STORY}", params={"as_of": "2001-01-01T00:00:00Z"})
    assert r.status_code == 404


async def test_min_position_waits_for_the_projection(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    await publish_hanoi(log, app, upto=3)
    [result] = await log.append(
        [msgspec.json.encode(update("dateline.story.concluded", subject=STORY))]
    )
    assert result.position is not None
    late = await api.get(
        f"/v1/stories/{STORY}", params={"min_position": result.position, "wait": 0.3}
    )
    assert late.status_code == 503
    assert late.headers["content-type"].startswith("application/problem+json")
    assert result.position in late.json()["detail"]

    async def project_soon() -> None:
        await asyncio.sleep(0.3)
        await settle(app)

    task = asyncio.create_task(project_soon())
    r = await api.get(f"/v1/stories/{STORY}", params={"min_position": result.position, "wait": 10})
    await task
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["status"]) == (4, "concluded")


@pytest.mark.parametrize(
    ("path", "status", "names"),
    [
        ("/v1/stories/Bad_Id", 400, "story id"),
        ("/v1/stories/no-such-story", 404, "no-such-story"),
        ("/v1/stories/no-such-story/timeline", 404, "no-such-story"),
        ("/v1/stories/no-such-story/history", 404, "no-such-story"),
        (f"/v1/stories/{STORY}?as_of=yesterday", 400, "as_of"),
        (f"/v1/stories/{STORY}?as_of=2019-02-28T10:00:00", 400, "offset"),
        (f"/v1/stories/{STORY}?as_of=2019-02-28T10:00:00Z&at_version=2", 400, "not both"),
        (f"/v1/stories/{STORY}?at_version=0", 400, "at_version"),
        (f"/v1/stories/{STORY}?min_position=12", 400, "min_position"),
        # Schemathesis found it: a partition past the log's was a 500 (an IndexError).
        (
            "/v1/schedule?min_position=7017:000-3304000&wait=0.1",
            400,
            "min_position: 7017:000-3304000: no partition 7017 (the log has 4, 0 to 3)",
        ),
        ("/v1/speakers/x/statements?min_position=4:1-0", 400, "no partition 4"),
        (
            f"/v1/stories/{STORY}/live?last_event_id=9:1-0",
            400,
            "Last-Event-ID: 9:1-0: no partition",
        ),
        ("/v1/schedule?from=tomorrow", 400, "from"),
        (
            "/v1/schedule?from=2019-02-28T00:00:00Z&to=2019-02-27T23:00:00Z",
            400,
            "to: 2019-02-27T23:00:00Z is before from (2019-02-28T00:00:00Z)",
        ),
        (f"/v1/stories/{STORY}/history?as_of=2019-02-28T10:00:00Z&at_version=2", 400, "not both"),
        (f"/v1/stories/{STORY}/live?last_event_id=nonsense", 400, "Last-Event-ID"),
        ("/v1/live?last_event_id=1-0", 400, "Last-Event-ID"),
        ("/v1/stories?after=yesterday", 400, "after: expected the `next` of a page"),
        ("/v1/stories?after=inf:hanoi-summit-2019", 400, "after: expected"),
        ("/v1/stories?after=1.5:Bad_Id", 400, "after: expected"),
    ],
)
async def test_bad_requests_are_refused_with_a_problem_naming_the_parameter(
    log: Log, app: Projector, api: httpx.AsyncClient, path: str, status: int, names: str
) -> None:
    await publish_hanoi(log, app, upto=2)
    r = await api.get(path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert names in r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "unknown", "takes"),
    [
        (f"/v1/stories/{STORY}?asof=2100-01-01T00:00:00Z", "asof", "as_of, at_version"),
        (f"/v1/stories/{STORY}?min_postion=1:1-0", "min_postion", "min_position, wait"),
        (f"/v1/stories/{STORY}/timeline?version=2", "version", "as_of, at_version"),
        (f"/v1/stories/{STORY}/history?since=1", "since", "as_of, at_version"),
        ("/v1/stories?limit=2&offset=2", "offset", "limit, min_position, overdue, status"),
        (
            "/v1/schedule?until=2019-03-01T00:00:00Z",
            "until",
            "after, from, limit, min_position, to",
        ),
        (f"/v1/stories/{STORY}/live?patch=true", "patch", "last_event_id, patches"),
        (f"/v1/stories/{STORY}/jsonld?lang=en", "lang", "it takes none"),
        ("/v1/me?x=1&y=2", "x, y", "not parameters"),
    ],
)
async def test_a_parameter_the_route_does_not_take_is_refused_naming_those_it_does(
    log: Log, app: Projector, api: httpx.AsyncClient, path: str, unknown: str, takes: str
) -> None:
    """Ignored, each would answer 200 with something else than was asked: the story now,
    a read that does not wait for the client's write, every entry from the first."""
    await publish_hanoi(log, app, upto=2)
    async with api.stream("GET", path) as r:  # a live route taken as asked would not end
        assert r.status_code == 400, r.status_code
        assert r.headers["content-type"].startswith("application/problem+json")
        detail = msgspec.json.decode(await r.aread())["detail"]
    assert detail.startswith(f"{unknown}: not"), detail
    assert takes in detail, detail
    # The same routes with what they take answer as before.
    right = {"asof": "as_of", "min_postion": "min_position", "version": "at_version"}
    if unknown in right:
        fixed = path.replace(f"{unknown}=", f"{right[unknown]}=")
        assert (await api.get(fixed)).status_code == 200


async def test_exports_carry_the_story(log: Log, app: Projector, api: httpx.AsyncClient) -> None:
    await publish_hanoi(log, app)
    r = await api.get(f"/v1/stories/{STORY}/jsonld")
    assert r.headers["content-type"].startswith("application/ld+json")
    doc = r.json()
    assert doc["@type"] == "Event"
    subs = {s["@id"].split("#item-")[1]: s for s in doc["subEvent"]}
    assert subs["working-lunch"]["eventStatus"] == "https://schema.org/EventCancelled"
    assert subs["press-conference"]["eventStatus"] == "https://schema.org/EventRescheduled"
    assert subs["press-conference"]["previousStartDate"] == ["2019-02-28"]
    assert {q["@type"] for q in doc["subjectOf"]} == {"Quotation"}
    assert len(doc["subjectOf"]) == 4
    tl = (await api.get(f"/v1/stories/{STORY}/timelinejs")).json()
    timeline = (await api.get(f"/v1/stories/{STORY}/timeline")).json()["items"]
    assert len(tl["events"]) == len(timeline)
    assert tl["title"]["text"]["headline"] == "Second US–North Korea summit"


async def test_jsonld_ids_never_come_from_the_requests_host(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    await publish_hanoi(log, app)
    doc = (await api.get(f"/v1/stories/{STORY}/jsonld", headers={"host": "evil.example"})).json()
    assert "evil.example" not in str(doc)
    assert doc["@id"] == f"/v1/stories/{STORY}"  # DATELINE_PUBLIC_URL unset: relative


async def test_the_dashboard_and_the_document_are_served(api: httpx.AsyncClient) -> None:
    page = await api.get("/")
    assert page.status_code == 200
    assert "<title>dateline</title>" in page.text
    assert (await api.get("/app.js")).status_code == 200
    doc = (await api.get("/v1/openapi.json")).json()
    assert "/v1/stories/{story}" in doc["paths"]
    assert (await api.get("/readyz")).json() == {"status": "ready"}


async def test_the_document_is_made_once(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made on each request it held the event loop 15 to 18 ms."""
    first = (await api.get("/v1/openapi.json")).content

    def made_again(self: object) -> NoReturn:
        raise AssertionError("the OpenAPI document was made again")

    monkeypatch.setattr(OpenAPI, "to_schema", made_again)
    again = await api.get("/v1/openapi.json")
    assert again.status_code == 200
    assert again.content == first


async def test_reads_follow_a_replay_switch_and_status_shows_its_progress(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    await publish_hanoi(log, app)
    assert (await api.get("/v1/stories")).json()["projection"] == "v1"
    result = await rebuild_all(log, log.keys)
    assert result.new == "v2"
    await drop_version(log.redis, log.keys, "v1")
    page = (await api.get("/v1/stories")).json()
    assert page["projection"] == "v2"
    assert {e["id"] for e in page["items"]} == {STORY, "cohen-hearing-2019"}
    assert (await api.get(f"/v1/stories/{STORY}")).json()["version"] == HANOI_VERSION
    replay = (await api.get("/v1/status")).json()["replay"]
    assert replay["state"] == "switched from v1"
    total = str(HANOI_UPDATES)
    assert (replay["version"], replay["done"], replay["total"]) == ("v2", total, total)


async def test_the_lag_trail_holds_what_the_process_read_every_few_seconds(
    log: Log, app: Projector, url: str
) -> None:
    """`DATELINE_LAG_TRAIL_S`: the query process reads the projection's lag on its own,
    and `/v1/status/lag` answers the points, oldest first, with its clock: what the
    operations page draws as it opens, before its own polls."""
    await publish_hanoi(log, app)
    await log.append([encode(update(subject=f"waiting-{i}")) for i in range(3)])
    every_second = dataclasses.replace(settings(log), lag_trail_s=1)
    async with (
        serve(create_app(every_second, url, poll_s=0.2)) as base,
        httpx.AsyncClient(base_url=base, headers=await bearer(url, log.keys.prefix)) as api,
    ):

        async def trail_until(lag: int) -> dict[str, Any]:
            for _ in range(60):
                found = cast(dict[str, Any], (await api.get("/v1/status/lag")).json())
                if found["points"] and found["points"][-1]["lag"] == lag:
                    return found
                await asyncio.sleep(0.1)
            raise AssertionError(f"no point with a lag of {lag}: {found}")

        waiting = (await trail_until(3))["points"][-1]
        assert waiting["appended"] == HANOI_UPDATES + 3 and waiting["exact"]
        assert sum(lag for _, lag in waiting["partitions"]) == 3
        await settle(app)
        trail = await trail_until(0)
        assert trail["every_s"] == 1
        ats = [p["at"] for p in trail["points"]]
        assert ats == sorted(ats) and ats[-1] <= trail["now"]
        assert waiting in trail["points"]  # kept: five minutes of them


async def test_the_index_pages_newest_first_from_its_by_time_index(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    await publish_hanoi(log, app)
    for n in range(5):
        await log.append([msgspec.json.encode(update(subject=f"later-{n}"))])
        await settle(app)
    everything = (await api.get("/v1/stories")).json()["items"]
    assert [e["id"] for e in everything[:5]] == [f"later-{n}" for n in (4, 3, 2, 1, 0)]
    assert len(everything) == 7
    newest = (await api.get("/v1/stories", params={"limit": 3})).json()["items"]
    assert newest == everything[:3]
    # The by-time index holds every story, in the order the full scan sorts them.
    members = newest_first(await zset_all(log.redis, app.models, lambda r: r.index_by_time))
    assert [m.decode() for m in members] == [e["id"] for e in everything]
    developing = (await api.get("/v1/stories", params={"status": "developing", "limit": 2})).json()
    assert [e["id"] for e in developing["items"]] == ["later-4", "later-3"]


async def test_a_speakers_statements_come_in_the_order_they_were_said(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    """Two desks' feeds, two offsets: 10:00+07:00 (03:00 UTC) was said before 05:00Z,
    though its text sorts after it."""
    said = [
        ("early", "the-desk", "2026-12-06T10:00:00+07:00"),
        ("late", "wire", "2026-12-06T05:00:00Z"),
    ]
    for ref, story, at in said:
        data = {"statement": ref, "speaker": "Offset Person", "text": f"said {ref}"}
        await log.append(
            [encode(update("dateline.statement.made", subject=story, time=at, data=data))]
        )
    await settle(app)
    got = (await api.get("/v1/speakers/offset person/statements")).json()["items"]
    assert [s["statement"]["statement"] for s in got] == ["early", "late"]


def _entries(body: dict[str, Any]) -> list[str]:
    """A board's entries as story/ref."""
    return [
        f"{e['story']}/{e['item']['item'] if 'item' in e else e['statement']['statement']}"
        for e in body["items"]
    ]


async def _board_pages(
    api: httpx.AsyncClient,
    path: str,
    limit: int,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> list[list[str]]:
    """Every page of a board (`path`) by `limit`, each after the `next` of the one before:
    each entry as story/ref."""
    pages: list[list[str]] = []
    after = None
    for _ in range(200):  # a `next` that never ends the board fails, not hangs
        asked: dict[str, Any] = {"limit": limit, **(params or {})}
        if after is not None:
            asked["after"] = after
        got = await api.get(path, params=asked, headers=headers)
        assert got.status_code == 200, got.text
        body = got.json()
        pages.append(_entries(body))
        if (after := body["next"]) is None:
            return pages
    raise AssertionError(f"still a next page after 200: {pages[-3:]}")


async def _refused(*args: object) -> NoReturn:
    raise AssertionError("read whole for a page that an index should have served")


async def test_the_boards_page_on_by_next_each_entry_once_and_in_order(
    log: Log, app: Projector, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schedule and a speaker's statements, a page at a time: every entry once, in
    the order of the whole board, ties at one instant split by story and ref, items with
    no known start last."""
    same = "2026-12-06T10:00:00+07:00"
    updates = []
    for story in ("desk-b", "desk-a"):
        for ref in ("talks", "lunch", "dinner"):
            updates.append(
                update(
                    "dateline.schedule.announced",
                    subject=story,
                    data={"item": ref, "title": ref, "starts_at": same},
                )
            )
        updates.append(
            update(
                "dateline.schedule.announced",
                subject=story,
                data={"item": "later", "title": "later", "starts_at": "2026-12-07"},
            )
        )
        updates.append(update("dateline.schedule.postponed", subject=story, data={"item": "later"}))
        for ref, at in (("early", "2026-12-06T02:00:00Z"), ("same", same), ("also", same)):
            data = {"statement": ref, "speaker": "Paged Person", "text": f"said {ref}"}
            updates.append(update("dateline.statement.made", subject=story, time=at, data=data))
    # News of an item before its announcement: on the board, with no known start.
    updates.append(update("dateline.schedule.postponed", subject="desk-a", data={"item": "tbc"}))
    appended = await log.append([encode(u) for u in updates])
    assert [r.status for r in appended] == ["appended"] * len(updates), appended
    await settle(app)
    for path in ("/v1/schedule", "/v1/speakers/paged person/statements"):
        whole = await api.get(path)
        assert whole.json()["next"] is None  # no limit: every entry, as before
        every = [
            f"{e['story']}/{e['item']['item'] if 'item' in e else e['statement']['statement']}"
            for e in whole.json()["items"]
        ]
        with monkeypatch.context() as patched:  # pages by the boards' indexes, not whole
            patched.setattr(Reader, "schedule", _refused)
            patched.setattr(Reader, "speaker", _refused)
            for limit in (1, 2, 3, 5, len(every), len(every) + 1):
                pages = await _board_pages(api, path, limit)
                assert [entry for page in pages for entry in page] == every, (path, limit)
                assert all(len(page) == limit for page in pages[:-1])
                assert 0 < len(pages[-1]) <= limit
    board = [e.rsplit("/", 1) for page in await _board_pages(api, "/v1/schedule", 4) for e in page]
    assert board[:6] == [
        ["desk-a", "dinner"],
        ["desk-a", "lunch"],
        ["desk-a", "talks"],
        ["desk-b", "dinner"],
        ["desk-b", "lunch"],
        ["desk-b", "talks"],
    ]
    assert board[-1] == ["desk-a", "tbc"]  # no known start: last
    said = await _board_pages(api, "/v1/speakers/paged person/statements", 2)
    assert said[0] == ["desk-a/early", "desk-b/early"]
    bad = await api.get("/v1/schedule", params={"after": "12~desk-a"})
    assert bad.status_code == 400 and "after: expected the `next`" in bad.json()["detail"]


async def test_the_schedule_board_pages_by_its_index_as_it_orders_the_whole(
    log: Log, app: Projector, api: httpx.AsyncClient, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of the board is read by its index, not whole, in the whole board's order:
    ties at one instant by story then ref, though the index orders `desk-a/x` before
    `desk/x`; date-only starts; items with no known start last, and out of any range;
    regions cut short mid-instant; a reader of one desk; an item moved while paging."""
    same, day = "2026-12-06T10:00:00+07:00", "2026-12-07"
    updates = []
    for n, story in enumerate(("desk", "desk-a", "desk-a-1", "desk-b", "deskz", "desk0")):
        for ref in ("a", "a-b", "b", "b.c", "c:1"):
            data = {"item": ref, "title": ref, "starts_at": same}
            updates.append(update("dateline.schedule.announced", subject=story, data=data))
        for hour in range(n, 24, 5):
            data = {"item": f"h{hour}", "title": "t", "starts_at": f"2026-12-05T{hour:02}:00:00Z"}
            updates.append(update("dateline.schedule.announced", subject=story, data=data))
        data = {"item": "day", "title": "t", "starts_at": day}
        updates.append(update("dateline.schedule.announced", subject=story, data=data))
        for ref in ("tbc", "tbd"):  # news of items before their announcements: no start
            updates.append(update("dateline.schedule.postponed", subject=story, data={"item": ref}))
    # One partition holds the first 40 items: the other regions' reads reach later ones
    # before its own reaches its last (each region reads twice its share of a page).
    for half in range(40):
        at = f"2026-12-04T{half // 2:02}:{half % 2 * 30:02}:00Z"
        data = {"item": f"m{half}", "title": "t", "starts_at": at}
        updates.append(update("dateline.schedule.announced", subject="crowd", data=data))
    appended = await log.append([encode(u) for u in updates])
    assert [r.status for r in appended] == ["appended"] * len(updates), appended
    await settle(app)
    whole = _entries((await api.get("/v1/schedule")).json())
    assert len(whole) == 40 + 6 * (5 + 1 + 2) + sum(len(range(n, 24, 5)) for n in range(6))
    assert whole[:40] == [f"crowd/m{half}" for half in range(40)]
    ties = [e for e in whole if e.rsplit("/", 1)[1] in ("a", "a-b", "b", "b.c", "c:1")]
    assert [e.split("/")[0] for e in ties[::5]] == [
        "desk", "desk-a", "desk-a-1", "desk-b", "desk0", "deskz"
    ]  # fmt: skip
    desks = sorted(("desk", "desk-a", "desk-a-1", "desk-b", "deskz", "desk0"))
    assert whole[-12:] == [f"{s}/{r}" for s in desks for r in ("tbc", "tbd")]  # no start: last
    # The pages below come from the index: a read of the whole board fails the test.
    whole_read = Reader.schedule

    monkeypatch.setattr(Reader, "schedule", _refused)
    for limit in (1, 2, 3, 7, 16, 50, len(whole) - 1, len(whole), 10_000):
        pages = await _board_pages(api, "/v1/schedule", limit)
        assert [entry for page in pages for entry in page] == whole, limit
        assert all(len(page) == limit for page in pages[:-1]) and 0 < len(pages[-1]) <= limit
    ranges = {"from": "2026-12-05T07:00:00Z", "to": "2026-12-06T03:00:00Z"}
    for asked in ({"from": ranges["from"]}, {"to": ranges["to"]}, ranges):
        monkeypatch.setattr(Reader, "schedule", whole_read)
        ranged = _entries((await api.get("/v1/schedule", params=asked)).json())
        monkeypatch.setattr(Reader, "schedule", _refused)
        assert "desk/tbc" not in ranged and ranged, asked
        for limit in (1, 4, 11):
            pages = await _board_pages(api, "/v1/schedule", limit, params=asked)
            assert [entry for page in pages for entry in page] == ranged, (asked, limit)
    desk = await bearer(url, log.keys.prefix, role="reader", prefixes=["desk-a"])
    mine = [e for e in whole if e.startswith("desk-a")]
    for limit in (1, 5, 9):
        pages = await _board_pages(api, "/v1/schedule", limit, desk)
        assert [entry for page in pages for entry in page] == mine, limit
    # An item moved behind a client while it pages is not listed again; one moved ahead
    # of it is listed where it now falls.
    first = (await api.get("/v1/schedule", params={"limit": 45})).json()
    assert "desk/h0" in _entries(first)
    moves = [("desk", "h0", "2026-12-08T00:00:00Z"), ("desk0", "day", "2026-12-01T00:00:00Z")]
    for story, ref, to in moves:
        data = {"item": ref, "starts_at": to}
        await log.append(
            [encode(update("dateline.schedule.rescheduled", subject=story, data=data))]
        )
    await settle(app)
    rest = [e for page in await _board_pages(api, "/v1/schedule", 10_000) for e in page]
    later = await api.get("/v1/schedule", params={"after": first["next"], "limit": 10_000})
    listed = _entries(first) + _entries(later.json())
    assert listed.count("desk/h0") == 2 and "desk0/day" not in _entries(later.json())
    assert set(listed) == set(rest) - {"desk0/day"}


async def test_a_version_built_before_the_board_index_pages_its_board_read_whole(
    log: Log, api: httpx.AsyncClient, url: str
) -> None:
    """Shape 5 left items with no known start out of the board's index: its pages are cut
    from the whole board, in the same order, until a replay builds today's shape."""
    old = ReadModels(log.keys, "v1", shape=BOARDS_BY_TIME - 1)
    await log.redis.set(old.shape, BOARDS_BY_TIME - 1)
    app = await projector(log, url)
    try:
        for story in ("desk", "desk-a"):
            await log.append(
                [
                    encode(
                        update("dateline.schedule.postponed", subject=story, data={"item": "tbc"})
                    ),
                    encode(
                        update(
                            "dateline.schedule.announced",
                            subject=story,
                            data={"item": "talks", "title": "t", "starts_at": "2026-12-07"},
                        )
                    ),
                    encode(
                        update(
                            "dateline.statement.made",
                            subject=story,
                            data={"statement": "s", "speaker": "Old Shape", "text": "Said."},
                        )
                    ),
                ]
            )
        await settle(app)
    finally:
        await app.client.aclose()
    assert not [r for r in old.regions if await log.redis.exists(r.speaker_by_time("Old Shape"))]
    indexed = await zset_all(log.redis, old, lambda r: r.schedule_by_start)
    assert [m for m, _ in indexed] == [b"desk-a/talks", b"desk/talks"]  # no `tbc`
    pages = await _board_pages(api, "/v1/schedule", 1)
    assert pages == [["desk/talks"], ["desk-a/talks"], ["desk/tbc"], ["desk-a/tbc"]]
    said = await _board_pages(api, "/v1/speakers/old shape/statements", 1)
    assert sorted(said) == [["desk-a/s"], ["desk/s"]]


async def _pages(
    api: httpx.AsyncClient, headers: dict[str, str] | None = None, **params: object
) -> list[list[str]]:
    """Every page of the list, each following the `next` of the one before."""
    pages: list[list[str]] = []
    after = None
    for _ in range(100):  # a `next` that never ends the list fails, not hangs
        asked = {**params, **({} if after is None else {"after": after})}
        got = await api.get("/v1/stories", params=cast(dict[str, Any], asked), headers=headers)
        assert got.status_code == 200, got.text
        pages.append([e["id"] for e in got.json()["items"]])
        if (after := got.json()["next"]) is None:
            return pages
    raise AssertionError(f"still a next page after 100: {pages[-3:]}")


async def test_the_index_pages_on_by_next_each_story_once_and_in_order(
    log: Log, app: Projector, api: httpx.AsyncClient, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newsroom's older stories are reached page by page, not only the newest 10,000;
    a story updated while a client pages moves to the top and is not listed again."""
    await log.append([encode(update(subject=f"batch-{n}", id=f"batch-{n}")) for n in range(7)])
    for n in range(5):
        await log.append([encode(update(subject=f"later-{n}", id=f"later-{n}"))])
    await settle(app)
    everything = (await api.get("/v1/stories")).json()
    order = [e["id"] for e in everything["items"]]
    assert len(order) == 12 and everything["next"] is None
    for limit, sizes in ((2, [2] * 6), (5, [5, 5, 2]), (12, [12]), (11, [11, 1])):
        pages = await _pages(api, limit=limit)
        assert [len(p) for p in pages] == sizes, limit
        assert list(itertools.chain(*pages)) == order, limit
    assert list(itertools.chain(*await _pages(api, limit=3, status="developing"))) == order
    # A reader of one desk's prefix: its stories read from the by-time indexes a few ids
    # at a time (2 here, across the batch's ties), paged alike; the whole index unread.

    monkeypatch.setattr(Reader, "index", _refused)
    monkeypatch.setattr(reads, "PREFIX_CHUNK", 2)
    desk = await bearer(url, log.keys.prefix, role="reader", prefixes=["batch-"])
    mine = [s for s in order if s.startswith("batch-")]
    for limit, sizes in ((3, [3, 3, 1]), (1, [1] * 7), (7, [7]), (6, [6, 1])):
        scoped = await _pages(api, desk, limit=limit)
        assert [len(p) for p in scoped] == sizes, limit
        assert list(itertools.chain(*scoped)) == mine, limit
    assert list(itertools.chain(*await _pages(api, desk, limit=2, status="developing"))) == mine
    two = await bearer(url, log.keys.prefix, role="reader", prefixes=["later-3", "batch-6"])
    assert list(itertools.chain(*await _pages(api, two, limit=1))) == ["later-3", "batch-6"]


async def test_a_story_updated_while_a_client_pages_moves_to_the_top_once(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    for n in range(8):
        await log.append([encode(update(subject=f"paged-{n}", id=f"paged-{n}"))])
        await settle(app)
    first = (await api.get("/v1/stories", params={"limit": 3})).json()
    assert [e["id"] for e in first["items"]] == ["paged-7", "paged-6", "paged-5"]
    later = update("dateline.statement.made", subject="paged-1", id="paged-1-again")
    await log.append([encode(later)])
    await settle(app)
    rest = (await api.get("/v1/stories", params={"after": first["next"]})).json()
    assert [e["id"] for e in rest["items"]] == ["paged-4", "paged-3", "paged-2", "paged-0"]
    assert rest["next"] is None
    top = (await api.get("/v1/stories", params={"limit": 1})).json()
    assert [e["id"] for e in top["items"]] == ["paged-1"]


async def test_an_unexpected_error_is_logged_and_answered_as_a_problem(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from structlog.testing import capture_logs  # noqa: PLC0415

    from dateline.query.reader import Reader  # noqa: PLC0415

    async def broken(self: Reader) -> list[bytes]:
        raise RuntimeError("the index is on fire")

    monkeypatch.setattr(Reader, "index", broken)
    auth = await bearer(url, log.keys.prefix)
    with capture_logs() as logs:
        async with (
            serve(create_app(settings(log), url)) as base,
            httpx.AsyncClient(base_url=base, headers=auth) as http,
        ):
            r = await http.get("/v1/stories", params={"status": "developing"})
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "RuntimeError" in r.json()["detail"]
    [failed] = [e for e in logs if e["event"] == "request failed"]
    assert failed["path"] == "/v1/stories"
    assert "on fire" in failed["error"]


async def test_a_version_past_any_list_index_means_all_of_it(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    """Found by schemathesis: at_version=38334923953608999450689458598313984 was a 500."""
    await publish_hanoi(log, app, upto=3)
    huge = 2**63 - 1
    r = await api.get(f"/v1/stories/{STORY}/history", params={"at_version": huge})
    assert [h["version"] for h in r.json()] == [1, 2, 3]
    r = await api.get(f"/v1/stories/{STORY}/history", params={"at_version": 2**70})
    assert r.status_code == 400
    assert "at_version" in r.json()["detail"]
    assert len(await log.read_story_json(STORY, to_version=2**70)) == 3


async def test_the_index_stream_reads_the_log_in_pages_up_to_the_checkpoint(
    log: Log, url: str
) -> None:
    """What `/v1/live` reads after a cursor: every applied entry once, none past a checkpoint."""
    app = await projector(log, url)
    stories = [f"page-{i}" for i in range(6)]
    applied = await log.append(
        [encode(update(subject=s, id=f"{s}-{n}")) for n in range(4) for s in stories]
    )
    await settle(app)
    # Appended but not yet projected: the stream must not announce these.
    await log.append([encode(update(subject=s, id=f"{s}-late")) for s in stories])
    reader = Reader(app.client, log.keys, Doorbell(app.client, log.keys.prefix))
    cursor, seen, pages = Cursor(tuple((0, 0) for _ in range(log.keys.partitions))), [], 0
    while True:
        page = await reader.applied_since(cursor, 2)
        for sid, p, raw in page.found:
            cursor = cursor.moved(p, sid)
            record = msgspec.json.decode(raw)
            seen.append(record["position"])
            # The story's index entry comes with the page, as it is now: at version 4.
            entry = msgspec.json.decode(data(page.entries[record["subject"]]))
            assert (entry["id"], entry["version"]) == (record["subject"], 4)
        pages += 1
        if not page.more:
            break
    assert sorted(seen) == sorted(str(r.position) for r in applied)  # each has one
    assert pages > 2  # a partition holds more than one page of 2
    last = await reader.applied_since(cursor, 2)
    assert (last.found, last.more, last.entries) == ([], False, {})
    # A live stream's page (one script) and a catching-up one (commands) read the same.
    start = Cursor(tuple((0, 0) for _ in range(log.keys.partitions)))
    one = await reader.applied_since(start, ONE_TRIP)
    assert one == await reader.applied_since(start, ONE_TRIP + 1)
    assert len(one.found) == 24 and not one.more
    await app.client.aclose()


async def test_a_page_of_the_index_stream_brings_the_entries_of_many_stories(
    log: Log, url: str
) -> None:
    """A page of a stream catching up can name thousands of stories, each with its entry."""
    app = await projector(log, url)
    for n in range(0, 8200, 1000):
        await log.append(
            [encode(update(subject=f"many-{i}")) for i in range(n, n + 1000)][: 8200 - n]
        )
    await settle(app)
    reader = Reader(app.client, log.keys, Doorbell(app.client, log.keys.prefix))
    start = Cursor(tuple((0, 0) for _ in range(log.keys.partitions)))
    page = await reader.applied_since(start, 8200)
    assert len(page.found) == len(page.entries) == 8200
    assert all(msgspec.json.decode(e or b"{}").get("id") == s for s, e in page.entries.items())
    await app.client.aclose()


@pytest.mark.parametrize("apart", [False, True], ids=["script", "commands"])
async def test_an_index_stream_behind_reads_bounded_pages_and_holds_none_at_its_yield(
    log: Log, url: str, where: str, monkeypatch: pytest.MonkeyPatch, apart: bool
) -> None:
    """A stream waits at its yield as long as its client takes to read (up to
    `SLOW_CLIENT_S`): it holds none of what it read then, and what it read is let go by
    the shared reads when the doorbell rings, not at some later read. Behind, it reads
    `BEHIND_PAGE` entries a page over its partitions, with commands: where small pages
    would go by the script (the read models on the log's server), more than `ONE_TRIP` a
    partition; elsewhere (the read models apart, a cluster) no more than its share."""
    if apart and where == "cluster":
        pytest.skip("a cluster reads every page with commands: its own case shows it")
    monkeypatch.setattr(live, "BEHIND_PAGE", 256)  # 32 a partition: the two ways differ
    app = await projector(log, url)
    for n in range(0, 3000, 1000):
        await log.append([encode(update(subject=f"behind-{i}")) for i in range(n, n + 1000)])
    await settle(app)
    doorbell = Doorbell(app.client, log.keys.prefix)
    views = aioredis.Redis.from_url(url) if apart else None  # another client: "apart"
    reader = Reader(app.client, log.keys, doorbell, views=views)
    assert reader.scripted is not (apart or where == "cluster")
    counts: list[int] = []
    applied_since = reader.applied_since

    async def counted(cursor: Cursor, count: int, bell: asyncio.Event | None = None) -> Any:
        counts.append(count)
        return await applied_since(cursor, count, bell)

    monkeypatch.setattr(reader, "applied_since", counted)
    start = Cursor(tuple((0, 0) for _ in range(log.keys.partitions)))
    stream = live.index_events(reader, start)
    assert isinstance(stream, types.AsyncGeneratorType)
    seen = 0
    while seen < 3000:
        page = await anext(stream)
        seen += sum(p.event == "update" for p in page)
        frame = stream.ag_frame
        assert frame is not None
        assert not [v for v in frame.f_locals.values() if isinstance(v, reads.Applied)]
    per_partition = 2 * ONE_TRIP if reader.scripted else 256 // log.keys.partitions
    assert len(counts) > 1 and set(counts) == {per_partition}  # a page each: behind
    assert len(reader.applied) > 0
    doorbell.ring()
    assert len(reader.applied) == 0
    await stream.aclose()
    await app.client.aclose()
    if views is not None:
        await views.aclose()


async def test_index_streams_asking_which_stories_are_parked_take_one_read_at_once(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every index stream asks each `HELD_CHECK_S`; those who find the last read old share
    the one running, and all go on as it ends, not one a turn of the loop (a lock made
    a thousand take turns, holding their pages)."""
    app = await projector(log, url)
    reader = Reader(app.client, log.keys, Doorbell(app.client, log.keys.prefix))
    reads_made, going = [], asyncio.Event()
    parked = reader.parked

    async def slow() -> dict[str, str]:
        reads_made.append(1)
        await going.wait()
        return {}

    await reader.models()  # known: the askers wait on nothing else
    monkeypatch.setattr(reader, "parked", slow)
    asking = [asyncio.ensure_future(reader.parked_lately(1.0)) for _ in range(100)]
    await asyncio.sleep(0.05)
    going.set()
    for _ in range(10):  # a few turns of the loop: not one an asker
        await asyncio.sleep(0)
    assert all(a.done() for a in asking) and reads_made == [1]
    assert await reader.parked_lately(1.0) == {} and reads_made == [1]  # fresh: taken
    assert await parked() == {}  # what the read stood for
    await app.client.aclose()


async def test_a_story_stream_asks_redis_only_once_a_commit_of_its_story_is_heard(
    log: Log, url: str
) -> None:
    """`story_since` answers "nothing new" from what the process keeps of the story until
    a commit that names it, or names none of its partition, is heard; one that names
    other stories leaves it kept."""
    app = await projector(log, url)
    await log.append([encode(update(id="u1", data={"title": "One"}))])
    await settle(app)
    reader = Reader(app.client, log.keys, Doorbell(app.client, log.keys.prefix))
    reader.cache.heard(None, live=True)  # as the doorbell's subscription, made, says
    story = update()["subject"]
    first, stamp, records = await reader.story_since(story, 0, 10)
    assert (stamp.version, len(records)) == (1, 1)
    await log.append([encode(update(id="u2", data={"title": "Two"}))])
    await settle(app)  # committed, and not heard: this process does not know yet
    kept, stamp, records = await reader.story_since(story, 1, 10)
    assert (kept.raw, stamp.version, records) == (first.raw, 1, [])
    partition = log.keys.partition(story)
    reader.cache.heard(f"{partition}:1-0 another-story".encode(), live=True)
    kept, stamp, records = await reader.story_since(story, 1, 10)
    assert (kept.raw, stamp.version, records) == (first.raw, 1, [])
    reader.cache.heard(f"{partition}:1-1 another-story {story}".encode(), live=True)
    _, stamp, records = await reader.story_since(story, 1, 10)
    assert (stamp.version, len(records)) == (2, 1)
    assert msgspec.json.decode(records[0])["id"] == "u2"
    await log.append([encode(update(id="u3", data={"title": "Three"}))])
    await settle(app)
    _, stamp, _ = await reader.story_since(story, 2, 10)
    assert stamp.version == 2  # kept again from the read that found u2
    reader.cache.heard(f"{partition}:1-2".encode(), live=True)  # names none: all of it
    _, stamp, records = await reader.story_since(story, 2, 10)
    assert (stamp.version, len(records)) == (3, 1)
    await app.client.aclose()


def gated_whole_reads(
    reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[tuple[Any, ...]], asyncio.Event]:
    """The reader's reads of a whole story, counted, each held until the event is set."""
    reads: list[tuple[Any, ...]] = []
    going = asyncio.Event()
    whole = reader._whole

    async def counted(*args: Any) -> tuple[bytes | None, str | None]:
        reads.append(args)
        await going.wait()
        return await whole(*args)

    monkeypatch.setattr(reader, "_whole", counted)
    return reads, going


async def test_the_streams_of_a_story_too_large_to_keep_share_one_read_and_rendering(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read whole by each stream at each ring, a long story's streams held a process at
    45% of a core with no commit at all: they take one read of its state between them,
    each its own records, and push one rendering."""
    app = await projector(log, url)
    await log.append([encode(update(id=f"u{n}", data={"title": f"T{n}"})) for n in range(3)])
    await settle(app)
    reader = Reader(app.client, log.keys, Doorbell(app.client, log.keys.prefix), cache_bytes=8)
    reader.cache.heard(None, live=True)  # as the doorbell's subscription, made, says
    story = update()["subject"]
    await reader.story_since(story, 0, 10)  # read alone: found too large to keep
    reads, going = gated_whole_reads(reader, monkeypatch)
    asking = [asyncio.ensure_future(reader.story_since(story, after, 10)) for after in (0, 1, 3)]
    await asyncio.sleep(0.05)
    going.set()
    got = await asyncio.gather(*asking)
    assert len(reads) == 1 and len({id(kept) for kept, _, _ in got}) == 1
    assert [[msgspec.json.decode(r)["id"] for r in records] for _, _, records in got] == [
        ["u0", "u1", "u2"],
        ["u1", "u2"],
        [],
    ]
    kept = got[0][0]
    pushes = [live._States(live.WHOLE, None).push(kept, "p") for _ in range(3)]
    assert len({id(p.data) for p in pushes}) == 1 and len(kept.rendered) == 1
    await app.client.aclose()


async def test_requests_for_a_story_while_it_is_read_share_one_read_and_its_rendering(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A story too large to keep (the cache holds none here) read by many at once: one
    read of Redis and one `Kept` for all; a request after a commit of its partition was
    heard does not take a read begun before it."""
    app = await projector(log, url)
    await log.append([encode(update(id="u1", data={"title": "One"}))])
    await settle(app)
    reader = Reader(app.client, log.keys, Doorbell(app.client, log.keys.prefix), cache_bytes=8)
    reader.cache.heard(None, live=True)  # as the doorbell's subscription, made, says
    reads, going = gated_whole_reads(reader, monkeypatch)
    story = update()["subject"]
    asking = [asyncio.ensure_future(reader.story_kept(story)) for _ in range(20)]
    await asyncio.sleep(0.05)
    await log.append([encode(update(id="u2", data={"title": "Two"}))])
    await settle(app)
    partition = log.keys.partition(story)
    reader.cache.heard(f"{partition}:1-1 {story}".encode(), live=True)  # heard meanwhile
    after = asyncio.ensure_future(reader.story_kept(story))
    await asyncio.sleep(0.05)
    going.set()
    kept = {id(k) for _, k in await asyncio.gather(*asking)}
    _, newer = await after
    assert len(kept) == 1 and id(newer) not in kept
    assert len(reads) == 2  # the twenty's one, and the one begun after the commit was heard
    assert newer.raw is not None and b'"Two"' in newer.raw
    await app.client.aclose()


async def test_a_resumed_story_stream_pages_through_its_gap_once_and_in_order(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await projector(log, url)
    results = await log.append(
        [encode(update(id=f"u{n}", data={"title": f"T{n}"})) for n in range(10)]
    )
    await settle(app)
    await log.append([encode(update(id="not-yet-applied"))])  # past the read model: never sent
    monkeypatch.setattr(live, "READ_AHEAD", 3)  # four pages for the six missed
    reader = Reader(app.client, log.keys, Doorbell(app.client, log.keys.prefix))
    resumed_at = Position.parse(results[3].position or "")
    got: list[str] = []
    async for message in flat(live.story_events(reader, STORY, resumed_at)):
        if message.event == "state":
            assert msgspec.json.decode(message.data)["version"] == 10
            break
        got.append(msgspec.json.decode(message.data)["id"])
    assert got == [f"u{n}" for n in range(4, 10)]
    await app.client.aclose()


async def test_the_index_stream_marks_updates_the_projector_parked(log: Log, url: str) -> None:
    """Past the checkpoint but not in the read model: sent, marked parked, not as news."""
    app = await projector(log, url, **failing_on("bad", 2))
    await log.append(
        [encode(update(subject=s, id=f"{s}-{i}")) for i in range(3) for s in ("bad", "good")]
    )
    await settle(app)
    assert len(await app.runner.dead.entries("bad")) == 2
    # Parking moves the checkpoint past them; a neighbour's update is applied after them.
    neighbour = neighbour_of(log, "bad")
    await log.append([encode(update(subject=neighbour, id="neighbour"))])
    await settle(app)
    reader = Reader(app.client, log.keys, Doorbell(app.client, log.keys.prefix))
    start = Cursor(tuple((0, 0) for _ in range(log.keys.partitions)))
    seen: dict[str, bool] = {}
    held: list[dict[str, Any]] = []
    async for message in flat(live.index_events(reader, start)):
        event = msgspec.json.decode(message.data)
        if message.event == "held":  # resumed: what is parked now, told once
            held.append(event)
            continue
        seen[event["id"]] = event.get("parked", False)
        if len(seen) == 7:
            break
    failed = next(f["entry"] for _, f in await app.runner.dead.entries("bad") if not f["behind"])
    assert [(h["story"], h["parked_at"], h["entry"]["version"]) for h in held] == [
        ("bad", f"{log.keys.partition('bad')}:{failed}", 1)
    ]
    assert seen == {
        "bad-0": False,
        "bad-1": True,  # failed and parked
        "bad-2": True,  # parked behind it
        "good-0": False,
        "good-1": False,
        "good-2": False,
        "neighbour": False,
    }
    await app.client.aclose()


@pytest.mark.parametrize("page", ["script", "commands"])
async def test_an_unreadable_log_entry_is_named_on_the_index_stream_which_goes_on(
    log: Log, app: Projector, page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written around the append script, an entry that is no update: the projector parks
    it; the index stream says so and goes on, rather than failing at it on every retry."""
    # As a live stream reads, pages small enough for `APPLIED`; or larger, in two trips.
    if page == "script":
        monkeypatch.setattr(live, "behind_count", lambda *_: ONE_TRIP)
    await log.append([encode(update(subject="before", id="before"))])
    stream = log.keys.log(log.keys.partition("before"))
    await app.client.xadd(stream, {"__data__": b"not json"})
    await app.client.xadd(stream, {"__data__": b'{"subject":"before","version":2}'})
    neighbour = neighbour_of(log, "before")
    await log.append([encode(update(subject=neighbour, id="neighbour"))])
    await settle(app)  # both parked; the neighbour's commit moves the checkpoint past them
    reader = Reader(app.client, log.keys, Doorbell(app.client, log.keys.prefix))
    start = Cursor(tuple((0, 0) for _ in range(log.keys.partitions)))
    got: list[tuple[str, str]] = []
    async for message in flat(live.index_events(reader, start)):
        if message.event == "held":  # the projector parked "before" at its bad entry
            continue
        event = msgspec.json.decode(message.data)
        got.append((message.event, event.get("id") or event["error"]))
        if len(got) == 4:
            break
    assert [event for event, _ in got] == ["update", "unreadable", "unreadable", "update"]
    assert (got[0][1], got[3][1]) == ("before", "neighbour")
    assert got[1][1].startswith("JSON is malformed")
    assert got[2][1] == "type: required field is missing"


async def test_read_your_writes_on_a_parked_update_says_it_is_parked(
    log: Log, url: str, api: httpx.AsyncClient
) -> None:
    """The checkpoint passes a parked update; a read waiting for it must not answer as if
    it were applied, nor wait in vain: 409, naming the story and the command."""
    app = await projector(log, url, **failing_on("bad", 2))
    results = await log.append([encode(update(subject="bad", id=f"bad-{i}")) for i in range(3)])
    good = await log.append([encode(update(subject="good", id="good-0"))])
    await settle(app)
    applied, failed, behind = (r.position for r in results)

    async def read(position: str | None) -> httpx.Response:
        return await api.get("/v1/stories/bad", params={"min_position": position, "wait": 0.3})

    # Parked at the partition's end: parking moved the checkpoint past it; 409.
    answer = await read(failed)
    assert answer.status_code == 409, answer.text
    problem = answer.json()
    assert problem["type"] == "urn:dateline:problem:parked"
    assert f"position {failed} is parked" in problem["detail"]
    assert "dateline dlq redrive bad" in problem["detail"]
    neighbour = neighbour_of(log, "bad")
    await log.append([encode(update(subject=neighbour, id="neighbour"))])
    await settle(app)
    # Past the checkpoint now, and still not in the story: 409 at once, not a stale 200.
    answer = await read(behind)
    assert answer.status_code == 409
    assert f"behind the update at {failed}" in answer.json()["detail"]
    assert (await read(applied)).status_code == 200  # before the failure: applied
    answer = await api.get("/v1/stories/good", params={"min_position": good[0].position})
    assert answer.status_code == 200
    await app.client.aclose()


async def test_a_parked_story_says_where_until_it_is_redriven(
    log: Log, url: str, api: httpx.AsyncClient
) -> None:
    """Its state reads as current otherwise: the API and the story's stream name the
    update that parked it, and stop once it is redriven; other stories name none."""
    app = await projector(log, url, **failing_on("bad", 2))
    await log.append([encode(update(subject=s, id=f"{s}-0")) for s in ("bad", "good")])
    await settle(app)
    reader = Reader(app.client, log.keys, Doorbell(app.client, log.keys.prefix, poll_s=0.05))
    ringing = asyncio.create_task(reader.doorbell.run())
    stream = flat(live.story_events(reader, "bad", None))
    first = msgspec.json.decode((await anext(stream)).data)
    assert (first["version"], first["parked_at"]) == (1, None)

    results = await log.append([encode(update(subject="bad", id=f"bad-{i}")) for i in (1, 2)])
    await settle(app)
    failed = results[0].position
    pushed = await asyncio.wait_for(anext(stream), 5)  # no update applied, yet news
    assert pushed.event == "state"
    assert msgspec.json.decode(pushed.data)["parked_at"] == failed
    assert (await api.get("/v1/stories/bad")).json()["parked_at"] == failed
    assert (await api.get("/v1/stories/good")).json()["parked_at"] is None
    old = await api.get("/v1/stories/bad", params={"at_version": 1})
    assert old.json()["parked_at"] is None  # folded here, from the story's history

    models = ReadModels(log.keys, app.models.version)
    await redrive(log, models, app.runner.dead, "bad")  # the fix landed: the bug is not in it
    pushed = await asyncio.wait_for(anext(stream), 5)
    while pushed.event == "update":  # the two the redrive applied, then the state
        pushed = await asyncio.wait_for(anext(stream), 5)
    assert msgspec.json.decode(pushed.data)["version"] == 3
    assert msgspec.json.decode(pushed.data)["parked_at"] is None
    assert (await api.get("/v1/stories/bad")).json()["parked_at"] is None
    ringing.cancel()
    await app.client.aclose()


async def test_a_story_that_cannot_be_folded_as_of_then_is_a_problem_that_names_it(
    log: Log, app: Projector, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await log.append([encode(update(subject="bad", id=f"bad-{v}")) for v in range(2)])
    await settle(app)
    # A projection bug that the projector's code does not have but this reader's does.
    monkeypatch.setattr(reads, "project", failing_on("bad", 2)["project_fn"])
    for path in ("/v1/stories/bad", "/v1/stories/bad/timeline"):
        ok = await api.get(path, params={"at_version": 1})
        assert ok.status_code == 200, ok.text
        failed = await api.get(path, params={"at_version": 2})
        assert failed.status_code == 500
        assert failed.headers["content-type"] == "application/problem+json"
        problem = failed.json()
        assert problem["type"] == "urn:dateline:problem:unfoldable"
        assert "story 'bad' cannot be folded" in problem["detail"]
        assert "projection bug" in problem["detail"]
        assert (await api.get(path)).status_code == 200  # the read model is still read


async def next_held(stream: AsyncIterator[live.Push]) -> dict[str, Any]:
    """The next `held` event of an index stream, decoded (5 s at most an event)."""
    while (pushed := await asyncio.wait_for(anext(stream), 5)).event != "held":
        pass
    return cast(dict[str, Any], msgspec.json.decode(pushed.data))


async def test_the_story_list_and_its_stream_say_which_stories_are_parked(
    log: Log, url: str, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "HELD_CHECK_S", 0.0)  # at every page, not every second
    app = await projector(log, url, **failing_on("bad", 2))
    await log.append([encode(update(subject=s, id=f"{s}-0")) for s in ("bad", "good")])
    await settle(app)
    reader = Reader(app.client, log.keys, Doorbell(app.client, log.keys.prefix, poll_s=0.05))
    ringing = asyncio.create_task(reader.doorbell.run())
    stream = flat(live.index_events(reader, None))
    first = await anext(stream)
    assert first.event == "index"
    assert {e["id"]: e["parked_at"] for e in msgspec.json.decode(first.data)} == {
        "bad": None,
        "good": None,
    }

    [failed] = await log.append([encode(update(subject="bad", id="bad-1"))])
    await settle(app)
    change = await next_held(stream)
    assert (change["story"], change["parked_at"], change["entry"]["version"]) == (
        "bad",
        failed.position,
        1,  # as it is: without the parked update
    )
    listed = (await api.get("/v1/stories")).json()["items"]
    assert {e["id"]: e["parked_at"] for e in listed} == {"bad": failed.position, "good": None}
    # A new connection's index says so from the start, and no `held` repeats it.
    again = flat(live.index_events(reader, None))
    index = {e["id"]: e["parked_at"] for e in msgspec.json.decode((await anext(again)).data)}
    assert index == {"bad": failed.position, "good": None}

    models = ReadModels(log.keys, app.models.version)
    await redrive(log, models, app.runner.dead, "bad")
    for one in (stream, again):  # the first `held` of each: no repeat of the parking
        change = await next_held(one)
        # Released, with the entry as the redrive left it: the update applied.
        assert (change["story"], change["parked_at"], change["entry"]["version"]) == (
            "bad",
            None,
            2,
        )
    listed = (await api.get("/v1/stories", params={"status": "developing"})).json()["items"]
    assert {e["id"]: e["parked_at"] for e in listed} == {"bad": None, "good": None}
    ringing.cancel()
    await app.client.aclose()


async def test_index_streams_share_one_read_of_the_parked_stories(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "HELD_CHECK_S", 0.5)
    monkeypatch.setattr(live, "KEEPALIVE_S", 0.02)  # each stream goes round every 20 ms
    app = await projector(log, url)
    await log.append([encode(update(subject="shared"))])
    await settle(app)
    reader = Reader(app.client, log.keys, Doorbell(app.client, log.keys.prefix))
    parked_reads = 0
    parked = reader.parked

    async def counted() -> dict[str, str]:
        nonlocal parked_reads
        parked_reads += 1
        return await parked()

    monkeypatch.setattr(reader, "parked", counted)

    async def follow(stream: AsyncIterator[list[live.Push]]) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                async for _ in stream:
                    pass

    await asyncio.gather(*(follow(live.index_events(reader, None)) for _ in range(5)))
    # Each new connection reads them once for its index; then one read each 0.5 s for
    # all five, where each stream had its own (5 + 5 x 4).
    assert 5 + 2 <= parked_reads <= 5 + 6
    await app.client.aclose()


async def test_index_streams_woken_by_one_commit_share_one_read_of_its_page(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five dashboards on the live index, 12 commits: each dashboard gets every update,
    once and in order, and the pages are read from Redis about once a commit, not once
    a commit and a dashboard (each of the five used to read each page itself)."""
    monkeypatch.setattr(live, "HELD_CHECK_S", 60.0)  # the parked stories' reads apart
    app = await projector(log, url)
    reader = Reader(app.client, log.keys, Doorbell.of(app.client, log.keys, poll_s=5.0))
    subscribed = asyncio.Event()

    def heard(news: bytes | None, live: bool) -> None:
        if live and news is None:
            subscribed.set()

    reader.doorbell.listeners.append(heard)
    ringing = asyncio.create_task(reader.doorbell.run())
    await subscribed.wait()
    reads = 0
    applied = reader._applied

    async def counted(cursor: Cursor, count: int) -> Any:
        nonlocal reads
        reads += 1
        return await applied(cursor, count)

    monkeypatch.setattr(reader, "_applied", counted)
    wanted = [f"d{n}" for n in range(12)]

    async def dashboard() -> list[str]:
        got: list[str] = []
        async with asyncio.timeout(20):
            async for message in flat(live.index_events(reader, None)):
                if message.event == "update":
                    got.append(msgspec.json.decode(message.data)["id"])
                    if len(got) == len(wanted):
                        return got
        return got

    dashboards = [asyncio.create_task(dashboard()) for _ in range(5)]
    await asyncio.sleep(0.2)  # each has its first page (the index) and waits for news
    before = reads
    for n in wanted:
        await log.append([encode(update(subject="shared", id=n))])
        await settle(app)  # a commit, a ring
        await asyncio.sleep(0.05)  # the streams hear it and read
    assert [await d for d in dashboards] == [wanted] * 5
    assert reads - before <= 2 * len(wanted)  # about one a commit; 5 a commit unshared
    ringing.cancel()
    await app.client.aclose()


async def test_the_index_stream_can_start_with_the_stories_updated_last(log: Log, url: str) -> None:
    app = await projector(log, url)
    for n in range(6):  # one at a time, so each has its own recorded time
        await log.append([encode(update(subject=f"limit-{n}", id=f"limit-{n}"))])
        await asyncio.sleep(0.002)
    await settle(app)
    reader = Reader(app.client, log.keys, Doorbell(app.client, log.keys.prefix))

    async def first(limit: int | None) -> list[str]:
        async for message in flat(live.index_events(reader, None, limit)):
            return [e["id"] for e in msgspec.json.decode(message.data)]
        raise AssertionError("no index event")

    assert await first(3) == ["limit-5", "limit-4", "limit-3"]
    assert await first(None) == [f"limit-{n}" for n in reversed(range(6))]
    await app.client.aclose()


async def test_stories_of_one_status_come_from_their_own_index_and_follow_a_change(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    for n in range(4):
        await log.append([msgspec.json.encode(update(subject=f"st-{n}", id=f"st-{n}"))])
        await settle(app)
    concluded = update("dateline.story.concluded", subject="st-1", id="st-1-end")
    await log.append([msgspec.json.encode(concluded)])
    await settle(app)

    async def ids(status: str) -> list[str]:
        got = await api.get("/v1/stories", params={"status": status, "limit": 10})
        return [e["id"] for e in got.json()["items"]]

    assert await ids("concluded") == ["st-1"]
    assert await ids("developing") == ["st-3", "st-2", "st-0"]
    # Read from the status's own index, which the story left when it concluded.
    in_developing = await zset_all(log.redis, app.models, lambda r: r.index_by_status("developing"))
    assert [m.decode() for m in newest_first(in_developing)] == ["st-3", "st-2", "st-0"]
    in_concluded = await zset_all(log.redis, app.models, lambda r: r.index_by_status("concluded"))
    assert members(in_concluded) == [b"st-1"]


@pytest.mark.one_server(
    "a version of an older shape was built on one server: a cluster log starts at shape 5"
)
async def test_a_version_built_before_the_status_indexes_is_read_the_old_way(
    log: Log, api: httpx.AsyncClient, url: str
) -> None:
    """Shape 1 (no stamp, as versions built before them): `?status=` reads the whole index.
    Read once before anything was written: a version not written yet is not taken to be
    of this release's shape for good (the query process's own lag reads ask at once)."""
    from structlog.testing import capture_logs  # noqa: PLC0415

    assert (await api.get("/v1/stories")).json()["items"] == []
    old = ReadModels(log.keys, "v1", shape=1)
    await log.redis.hset(old.region(0).checkpoint, "0", "0-0")  # written, never stamped
    with capture_logs() as logs:
        app = await projector(log, url)
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert (warning["shape"], warning["expected"], warning["version"]) == (1, SHAPE, "v1")
    assert "dateline replay stories" in warning["event"]
    try:
        for n in range(3):
            await log.append([msgspec.json.encode(update(subject=f"old-{n}", id=f"old-{n}"))])
        await settle(app)
    finally:
        await app.client.aclose()
    assert not await log.redis.exists(old.shape)  # as it was
    # As a version an older projector built, then a newer one wrote to for a while: the
    # by-status sets hold only the stories updated since.
    await log.redis.zrem(old.region(0).index_by_status("developing"), "old-0", "old-1")
    got = await api.get("/v1/stories", params={"status": "developing"})
    assert [e["id"] for e in got.json()["items"]] == ["old-2", "old-1", "old-0"]


@pytest.mark.one_server(
    "a version of an older shape was built on one server: a cluster log starts at shape 5"
)
async def test_a_version_built_with_inline_statements_is_written_and_read_that_way(
    log: Log, api: httpx.AsyncClient, url: str
) -> None:
    """Shape 2 kept a story's statements inside its state: a projector goes on writing
    them there until a replay, and the API reads them as they are."""
    old = ReadModels(log.keys, "v1", OWN_STATEMENTS - 1)
    await log.redis.set(old.shape, OWN_STATEMENTS - 1)
    app = await projector(log, url)
    try:
        await publish_hanoi(log, app)
    finally:
        await app.client.aclose()
    stored = msgspec.json.decode(data(await log.redis.get(old.story(STORY))))
    assert len(stored["statements"]) > 3
    assert not await log.redis.exists(old.statements(STORY))
    state = await rebuilt(log, STORY)
    r = await api.get(f"/v1/stories/{STORY}")
    assert r.json() == public(msgspec.json.decode(msgspec.json.encode(without_timeline(state))))
    assert await old.read_state(log.redis, STORY) == state


def _item(story: str, item: str, starts_at: str, **attrs: Any) -> bytes:
    data = {"item": item, "title": item.title(), "starts_at": starts_at}
    return encode(update("dateline.schedule.announced", subject=story, data=data, **attrs))


async def _overdue_newsroom(log: Log, app: Projector) -> None:
    """late-story: one item overdue, one in the future, one started; calm-story: none due."""
    await log.append(
        [
            _item("late-story", "vote", "2020-05-30T10:00:00Z"),
            _item("late-story", "count", "2999-01-01T10:00:00Z"),
            _item("late-story", "speech", "2020-05-30T09:00:00Z"),
            encode(
                update(
                    "dateline.schedule.started",
                    subject="late-story",
                    time="2020-05-30T09:05:00Z",
                    data={"item": "speech"},
                )
            ),
            _item("calm-story", "vote", "2999-05-30"),
        ]
    )
    await settle(app)


async def test_overdue_items_are_flagged_and_their_stories_filtered(
    log: Log, app: Projector, api: httpx.AsyncClient
) -> None:
    """Overdue at read time, by the server's clock: on the story, the board and the list,
    and `?overdue=true` lists only the stories with such an item, until it is reported."""
    await _overdue_newsroom(log, app)
    story = (await api.get("/v1/stories/late-story")).json()
    assert {ref: i["overdue"] for ref, i in story["schedule"].items()} == {
        "vote": True,
        "count": False,
        "speech": False,
    }
    board = (await api.get("/v1/schedule")).json()["items"]
    late = {f"{e['story']}/{e['item']['item']}" for e in board if e["item"]["overdue"]}
    assert late == {"late-story/vote"}
    listed = (await api.get("/v1/stories")).json()["items"]
    assert {e["id"]: e["overdue"] for e in listed} == {"late-story": True, "calm-story": False}
    only = (await api.get("/v1/stories", params={"overdue": "true"})).json()["items"]
    assert [e["id"] for e in only] == ["late-story"]
    # Reported: the vote started. Nothing is overdue any more.
    started = update(
        "dateline.schedule.started",
        subject="late-story",
        time="2020-05-30T10:02:00Z",
        data={"item": "vote"},
    )
    await log.append([encode(started)])
    await settle(app)
    assert (await api.get("/v1/stories", params={"overdue": "true"})).json()["items"] == []
    assert not (await api.get("/v1/stories/late-story")).json()["schedule"]["vote"]["overdue"]
    # The due index holds only what is still to happen.
    due = await zset_all(log.redis, app.models, lambda r: r.schedule_due)
    assert sorted(members(due)) == [b"calm-story/vote", b"late-story/count"]


@pytest.mark.one_server(
    "a version of an older shape was built on one server: a cluster log starts at shape 5"
)
async def test_a_version_built_before_the_due_index_finds_overdue_stories_on_the_board(
    log: Log, api: httpx.AsyncClient, url: str
) -> None:
    """Shape 3 had no due index: `?overdue=true` reads the whole board instead."""
    old = ReadModels(log.keys, "v1", shape=3)
    await log.redis.set(old.shape, 3)
    app = await projector(log, url)
    try:
        await _overdue_newsroom(log, app)
    finally:
        await app.client.aclose()
    assert not await log.redis.exists(old.region(0).schedule_due)
    assert await log.redis.hlen(old.region(0).schedule) == 4
    only = (await api.get("/v1/stories", params={"overdue": "true"})).json()["items"]
    assert [e["id"] for e in only] == ["late-story"]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/%00", 400), ("/app.js%00", 400), ("/v1/stories/a%00b", 400), ("/v1/sta%0Atus", 404)],
)
async def test_a_control_character_in_a_path_is_a_4xx_problem(
    api: httpx.AsyncClient, path: str, status: int
) -> None:
    """The probe's `%00` reached the static files route and came back a 500: a path a
    route matches is a 400 naming it; one no route matches, a 404 as any other."""
    r = await api.get(path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    if status == 400:
        assert r.json()["type"] == "urn:dateline:problem:bad-path"
        assert "%00" in r.json()["detail"]


async def test_quiet_streams_get_keepalives_though_the_bell_rings_on_a_timer(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The doorbell rings every `poll_s` even with no commit; a stream that took a ring for
    news never sent its keepalive, and a quiet stream looked dead to proxies (the soak
    found it: no byte in 60 s once the load stopped)."""
    monkeypatch.setattr(live, "KEEPALIVE_S", 0.3)
    app = await projector(log, url)
    await log.append([encode(update(subject="quiet"))])
    await settle(app)
    bell = Doorbell(app.client, log.keys.prefix, poll_s=0.05)
    ringing = asyncio.create_task(bell.run())
    reader = Reader(app.client, log.keys, bell)

    async def pages(stream: AsyncIterator[list[live.Push]]) -> list[list[live.Push]]:
        got: list[list[live.Push]] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.5):
                async for page in stream:
                    got.append(page)
        return got

    index, story = await asyncio.gather(
        pages(live.index_events(reader, None)), pages(live.story_events(reader, "quiet", None))
    )
    ringing.cancel()
    await app.client.aclose()
    assert index[0] and sum(1 for p in index if not p) >= 3  # the index, then keepalives
    assert story[0] and sum(1 for p in story if not p) >= 3


async def _scored_stories(
    log: Log, status: str | None, a_score: int
) -> tuple[Reader, list[tuple[float, str]]]:
    """60 stories in the by-time index (of `status`), `a_score` sharing each score, as
    the projector scores them; and (score, story) of each, newest first."""
    reader = Reader(log.redis, log.keys, Doorbell(log.redis, log.keys.prefix))
    models = await reader.models()
    expected: list[tuple[float, str]] = []
    for n in range(60):
        story, score = f"st-{n}", float(1_000 + n // a_score)
        region = models.region_of(story)
        by_time = region.index_by_time if status is None else region.index_by_status(status)
        await log.redis.zadd(by_time, {story: score})
        await log.redis.hset(region.index, story, msgspec.json.encode({"id": story}))
        expected.append((score, story))
    return reader, sorted(expected, reverse=True)


@pytest.mark.one_server("newest.lua reads every region at once; a cluster merges in Python")
@pytest.mark.parametrize("status", [None, "developing"])
async def test_the_newest_by_one_script_are_those_of_the_merge_of_every_region(
    log: Log, status: str | None
) -> None:
    """`newest.lua` (one server) and the per-region reads merged here (a cluster) give
    the stories one sorted set of them all would: by score, then member, from the
    highest; ties across partitions included."""
    reader, expected = await _scored_stories(log, status, 4)
    for limit in (1, 7, 50, 60, 100):
        by_script = await reader._newest(limit, status)
        reader.sharded = True  # as on a cluster: each region read, merged here
        merged = await reader._newest(limit, status)
        reader.sharded = False
        want = [msgspec.json.encode({"id": story}) for _, story in expected[:limit]]
        assert by_script == merged == want, limit


@pytest.mark.parametrize("status", [None, "concluded"])
async def test_pages_from_a_place_split_ties_of_one_score_by_story_id(
    log: Log, status: str | None
) -> None:
    """A batch's stories share their `recordedtime`: from a place among them, a page
    goes on with the smaller ids of that score, then the older scores, across regions."""
    reader, expected = await _scored_stories(log, status, 7)
    # On one server, `newest.lua` and the merge here (a cluster's, or a page past 256).
    for sharded, limit in itertools.product({reader.sharded, True}, (1, 3, 7, 10)):
        reader.sharded = sharded
        paged: list[bytes] = []
        after: Place | None = None
        for _ in range(len(expected) + 1):  # a page that never moves on fails, not hangs
            if not (page := await reader._newest(limit, status, after)):
                break
            assert len(page) <= limit
            paged += page
            last = msgspec.json.decode(page[-1])["id"]
            after = Place(next(s for s, story in expected if story == last), last)
        assert paged == [msgspec.json.encode({"id": story}) for _, story in expected], limit
        assert await reader._newest(limit, status, after) == []  # past the end: empty
