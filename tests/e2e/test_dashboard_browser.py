"""The Hanoi story, published update by update, unfolds on the story page in a real browser."""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, async_playwright, expect

from dateline.projector.ops import redrive
from dateline.runtime import DeadLetters, catchup
from dateline.store import backup, migrate
from dateline.store.layout import DELIVER_GROUP, Keys, replay_key
from dateline.store.log import Log
from dateline.store.readmodels import SHAPE, ReadModels
from dateline.store.subscriptions import Subscriptions
from tests.conftest import VALKEY, start_server
from tests.e2e.browser import ARGS, ARTIFACTS, chromium
from tests.e2e.processes import background, http_service
from tests.factories import encode, update
from tests.integration.test_kit import until
from tests.projection_helpers import HANOI, HANOI_VERSION
from tests.readers import bearer

STORY = "hanoi-summit-2019"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    server = start_server(VALKEY, tmp_path_factory.mktemp("browser-redis"))
    logs = tmp_path_factory.mktemp("browser-logs")
    env = {**os.environ, "REDIS_URL": server.url, "DATELINE_PREFIX": "web"}
    try:
        with (
            background(["projector"], env, logs / "projector.log"),
            http_service("query", env, logs / "query.log") as base,
        ):
            yield base, server.url
    finally:
        server.stop()


async def sign_in(page: Page, base: str, token: str) -> None:
    """As a person does: the dashboard sends them to sign in; they paste their token."""
    await page.goto(f"{base}/")
    await expect(page).to_have_url(f"{base}/signin.html?needed")
    await expect(page.locator("#why")).to_contain_text("Sign in to read the stories")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{base}/")
    await expect(page.locator("#who")).not_to_be_empty()


@pytest.fixture
async def browser_page(system: tuple[str, str]) -> AsyncIterator[Page]:
    """A browser page, not signed in; console errors and page errors fail the test."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium(), args=ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 1600})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # Console errors too (a Content-Security-Policy refusal is one), but not a
        # failed fetch: a 404 is how the page learns a story has no updates yet.
        page.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        yield page
        await browser.close()
        assert errors == [], f"the page raised: {errors}"


@pytest.fixture
async def page(system: tuple[str, str], browser_page: Page) -> Page:
    """Signed in as ops."""
    base, url = system
    await sign_in(browser_page, base, (await bearer(url, "web"))["authorization"][7:])
    return browser_page


async def test_the_story_page_changes_live_as_updates_land(
    system: tuple[str, str], page: Page
) -> None:
    base, url = system
    client = aioredis.Redis.from_url(url)
    log = Log(client, Keys("web", 8))
    lines = [x for x in HANOI.read_bytes().splitlines() if x.strip()]
    hanoi = [x for x in lines if b'"subject": "hanoi-summit-2019"' in x]
    assert len(hanoi) == HANOI_VERSION

    async def publish(upto: int) -> None:
        """Publish Hanoi updates until the story is at version `upto`, one request each."""
        while (have := await log.version(STORY)) < upto:
            await log.append([hanoi[have]])

    await page.goto(f"{base}/#/stories/{STORY}")
    await expect(page.locator("#head")).to_contain_text("waiting for the first update")
    await expect(page.locator("#live")).to_have_text("live")

    await publish(1)
    await expect(page.locator("#head h1")).to_have_text("Second US–North Korea summit")

    await publish(10)  # the programme of the 28th, the lunch and the press conference on it
    lunch = page.locator('[data-item="working-lunch"]')
    press = page.locator('[data-item="press-conference"]')
    await expect(lunch).to_have_attribute("data-status", "scheduled")
    await expect(press).to_have_attribute("data-status", "scheduled")

    await publish(13)  # Kim through an interpreter, and Trump's reply
    kim = page.locator('[data-statement="kim-willing"]')
    await expect(kim).to_contain_text("If I’m not willing to do that")
    await expect(kim).to_contain_text("via interpreter")
    reply = page.locator('[data-statement="trump-best-answer"]')
    await expect(reply).to_have_class("card statement reply changed")
    await expect(reply).to_contain_text("in reply to kim-willing")

    await publish(15)  # the lunch is cut at the last minute
    await expect(lunch).to_have_attribute("data-status", "cancelled")
    await expect(lunch).to_contain_text("Cut from the programme at the last minute")
    await expect(lunch).to_have_class("card item cancelled changed")

    await publish(16)  # the press conference moves up two hours
    await expect(press).to_have_attribute("data-status", "rescheduled")
    await expect(press).to_contain_text("moved up 2 h")
    await expect(page.locator("#outcome-banner")).to_have_count(0)

    await publish(HANOI_VERSION)  # the outcome, the expectations unmet, the story concluded
    banner = page.locator("#outcome-banner")
    await expect(banner).to_contain_text("Outcome: no agreement")
    await expect(banner).to_have_attribute("data-result", "no_agreement")
    await expect(page.locator('[data-expectation="yongbyon-pledge"]')).to_have_attribute(
        "data-status", "unmet"
    )
    await expect(page.locator("#links")).to_contain_text("cohen-hearing-2019")
    await expect(page.locator("#head")).to_contain_text("concluded")
    await expect(page.locator("#timeline li")).to_have_count(HANOI_VERSION)
    await expect(page.locator("#held-banner")).to_have_count(0)
    # What the report says took place is over; what it says no more of is overdue: the
    # press conference was moved up, and nothing says it was held.
    for done in ("summit", "extended-bilateral-meeting", "closed-door-talks"):
        await expect(page.locator(f'[data-item="{done}"]')).to_have_attribute(
            "data-status", "ended"
        )
    await expect(press).to_have_attribute("data-overdue", "true")
    await expect(press.locator(".was")).to_have_count(0)  # -2 h leaves its day as it was
    await expect(press.locator(".chip.overdue")).to_have_text("overdue")
    await expect(page.locator('[data-item="summit"] .chip.overdue')).to_have_count(0)
    await expect(page.locator('[data-item="summit"]')).to_contain_text(
        "ended Thu, 28 Feb 2019 13:25"
    )

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "hanoi-story-page.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # An entry of the story the projector cannot apply (written around the append
    # script): retried, parked; the page says it is behind, and stops saying so once
    # ops redrive the story.
    stream = log.keys.log(log.keys.partition(STORY))
    bad = b'{"subject": "hanoi-summit-2019", "version": %d}' % (HANOI_VERSION + 1)
    await client.xadd(stream, {"__data__": bad})
    held = page.locator("#held-banner")
    await expect(held).to_contain_text("Updates held back")
    await expect(held).to_have_attribute("data-position", re.compile(r"^\d+:\d+-\d+$"))
    await page.screenshot(path=str(ARTIFACTS / "hanoi-story-held-back.png"), full_page=True)
    await page.goto(f"{base}/#/ops")  # where on-call looks: which story, parked where
    await expect(page.locator(f'[data-parked="{STORY}"]')).to_contain_text(":")
    await expect(page.locator("#ops")).to_contain_text("dateline dlq redrive STORY")
    # The server's disk beside it: its AOF, and what its latency monitor logged.
    await expect(page.locator("[data-disk]")).to_have_count(1)
    await expect(page.locator("[data-disk]")).to_contain_text(re.compile(r"AOF [\d.]+ MB"))
    await expect(page.locator("[data-disk]")).to_contain_text(
        re.compile(r"memory [\d.]+ MB of [\d.]+ MB")
    )
    await expect(page.locator("[data-disk] .warning")).to_have_count(0)  # neither full nor failing
    await page.screenshot(path=str(ARTIFACTS / "operations-page-parked.png"), full_page=True)
    await page.goto(f"{base}/#/")  # the list says so too, and stops when it is redriven
    row_held = page.locator(f'[data-story="{STORY}"] .chip.held')
    await expect(row_held).to_have_text("held back")
    await page.screenshot(path=str(ARTIFACTS / "story-list-held-back.png"))
    models = ReadModels(log.keys, "v1")
    await redrive(log, models, DeadLetters(client, "web", models.group), STORY)
    await expect(row_held).to_have_count(0)
    await page.goto(f"{base}/#/stories/{STORY}")
    await expect(page.locator("#head")).to_contain_text(f"version {HANOI_VERSION}")
    await expect(held).to_have_count(0)
    # The schedule board flags the overdue item too, and the list can show only the
    # stories that have one.
    await page.goto(f"{base}/#/schedule")
    overdue_row = page.locator(f'[data-board="{STORY}/press-conference"]')
    await expect(overdue_row).to_have_attribute("data-overdue", "true")
    await expect(page.locator(f'[data-board="{STORY}/summit"]')).to_contain_text("ended")
    await expect(page.locator(f'[data-board="{STORY}/summit"] .chip.overdue')).to_have_count(0)
    await page.screenshot(path=str(ARTIFACTS / "schedule-board.png"), full_page=True)
    await page.goto(f"{base}/#/overdue")
    await expect(page.locator(f'[data-story="{STORY}"]')).to_have_attribute("data-overdue", "true")
    await page.screenshot(path=str(ARTIFACTS / "stories-overdue.png"))
    await client.aclose()


async def test_the_story_page_asks_for_the_timeline_once_a_version(
    system: tuple[str, str], page: Page
) -> None:
    """The page reads the state again every 30 s (overdue follows the clock): that
    must not fetch the timeline again when the version has not moved."""
    base, url = system
    story = "timeline-once-2019"
    client = aioredis.Redis.from_url(url)
    log = Log(client, Keys("web", 8))
    await log.append([encode(update(subject=story, id=f"t{i}")) for i in range(3)])
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if r.url.endswith("/timeline") else None)
    await page.clock.install()
    await page.goto(f"{base}/#/stories/{story}")
    await expect(page.locator("#timeline li")).to_have_count(3)
    assert len(asked) == 1
    async with page.expect_response(f"{base}/v1/stories/{story}"):
        await page.clock.run_for("00:31")  # the page's 30 s read of the state
    await log.append([encode(update(subject=story, id="t3"))])  # the version moves
    await expect(page.locator("#timeline li")).to_have_count(4)
    assert len(asked) == 2
    await client.aclose()


async def test_the_story_list_shows_new_stories_live(system: tuple[str, str], page: Page) -> None:
    base, url = system
    await page.goto(f"{base}/#/")
    await expect(page.locator("#live")).to_have_text("live")
    client = aioredis.Redis.from_url(url)
    log = Log(client, Keys("web", 8))
    cohen = [x for x in HANOI.read_bytes().splitlines() if b'"subject": "cohen-hearing-2019"' in x]
    await log.append(cohen[:1])
    row = page.locator('[data-story="cohen-hearing-2019"]')
    await expect(row).to_contain_text("Michael Cohen testifies to Congress")
    await expect(row).to_have_class("changed")
    subs = Subscriptions(client, Keys("web", 8))
    await subs.add("https://cms.example.org/hooks", name="cms", story_prefixes=["hanoi-"])
    await subs.set_paused("cms", True)
    await client.aclose()
    # The page reads the status every 2 s; each change below moves its clock on by that
    # (`polled`), so that no step waits for the next poll (the test took 25 s so).
    await page.clock.install()
    await page.goto(f"{base}/#/ops")

    async def polled() -> None:
        await page.clock.run_for(2000)

    await expect(page.locator("#ops")).to_contain_text("Partitions")
    # This system's log is not sealed (no key): each partition says so. One marked
    # sealed from its first record on says that, not "after 0-0".
    await expect(page.locator('[data-key="p0"]')).to_contain_text("not sealed")
    marking = aioredis.Redis.from_url(url)
    await marking.hset(Keys("web", 8).seal(7), "from", "0-0")
    await polled()
    await expect(page.locator('[data-key="p7"]')).to_contain_text("from the start")
    await marking.delete(Keys("web", 8).seal(7))  # the tests after this one append there
    # A small server's AOF: its size, not its growth from the few kB a rewrite of next to
    # nothing left (the demo's read "3388.1x what the last rewrite left").
    await marking.bgrewriteaof()

    async def rewritten() -> bool:
        persistence = await marking.info("persistence")
        return not persistence["aof_rewrite_in_progress"] and persistence["aof_base_size"] > 0

    await until(rewritten)
    assert (await marking.info("persistence"))["aof_base_size"] < 2**20
    await marking.aclose()
    await page.reload()  # rendered from a status read after the rewrite
    disk = page.locator("[data-disk]").first
    await expect(disk).to_contain_text("AOF ")
    await expect(disk).not_to_contain_text("what the last rewrite left")
    # Where deliveries stand: the subscription, what it wants, and that it is paused.
    sub = page.locator('[data-subscription="cms"]')
    await expect(sub).to_contain_text("https://cms.example.org/hooks")
    await expect(sub).to_contain_text("hanoi-*")
    await expect(sub).to_contain_text("paused")
    # No `dateline deliver` runs in this system: said, for nothing is sent.
    nodeliver = page.locator('[data-key="nodeliver"]')
    await expect(nodeliver).to_contain_text("No delivery service running")
    # The projector process of this system, by the name its leases carry.
    await expect(page.locator('[data-key="procs"]')).to_contain_text(
        re.compile(r"^1 projector process sharing them: \S+-\d+$")
    )
    # The last backup: none yet, said as a warning; then the one `dateline backup` records.
    backup_card = page.locator('[data-key="backup"]')
    await expect(backup_card).to_contain_text("No backup recorded: dateline backup FILE")
    client = aioredis.Redis.from_url(url)
    taken = backup.Taken(time.time() - 7200, 29, 2, "/backups/nightly.ndjson.gz", 2_800_000, True)
    await backup.record_taken(client, "web", taken)
    await polled()
    await expect(backup_card).to_contain_text(
        "began 2 h ago · 29 updates of 2 stories · /backups/nightly.ndjson.gz (2.8 MB) · signed"
    )
    await expect(backup_card.locator(".warning")).to_have_count(0)
    # A log being moved (`dateline migrate`) says so at the top, and stops saying so
    # once the freeze is lifted.
    keys = Keys("web", 8)
    detail = migrate.frozen_detail("redis://:****@cluster-1:6379/0")
    await migrate.freeze(client, keys, detail, "redis://:****@cluster-1:6379/0")
    await polled()
    moving = page.locator('[data-key="moving"]')
    await expect(moving).to_contain_text("The log is being moved to redis://:****@cluster-1")
    await Subscriptions(client, keys).set_paused("cms", False)
    await polled()
    await expect(sub).to_contain_text("held: moving")  # deliver sends nothing meanwhile
    await migrate.release(client, keys)
    await polled()
    await expect(moving).to_have_count(0)
    await expect(sub).to_contain_text("delivering")
    # A delivery service's lease held: the warning goes, and the page names who sends and
    # who stands by to take over (the group's heartbeats).
    await client.set(keys.group(DELIVER_GROUP).lease("all"), "deliver-1", px=60_000)
    await polled()
    await expect(nodeliver).to_have_count(0)
    delivering = page.locator('[data-key="delivering"]')
    await expect(delivering).to_have_text("Sent by deliver-1 · none standing by")
    alive_until = (time.time() + 60) * 1000
    await client.zadd(keys.group(DELIVER_GROUP).members, {"deliver-1": alive_until})
    await client.zadd(keys.group(DELIVER_GROUP).members, {"deliver-2": alive_until})
    await polled()
    await expect(delivering).to_have_text("Sent by deliver-1 · standing by to take over: deliver-2")
    await client.delete(keys.group(DELIVER_GROUP).lease("all"))
    await client.delete(keys.group(DELIVER_GROUP).members)
    # Read models an older release built: said, with what to run; gone once they are not.
    old_shape = page.locator('[data-key="oldshape"]')
    await expect(old_shape).to_have_count(0)
    shape = ReadModels(keys, "v1").shape
    await client.set(shape, SHAPE - 1)
    await polled()
    await expect(old_shape).to_contain_text(
        f"Read models of v1 are shape {SHAPE - 1}, older than this release's {SHAPE}"
    )
    await expect(old_shape).to_contain_text("dateline replay stories")
    await client.set(shape, SHAPE)
    await polled()
    await expect(old_shape).to_have_count(0)
    # A rebuild under way (`dateline replay` writes its progress): how far, and about
    # how long to go at its rate; once it has switched, no estimate.
    await client.hset(
        replay_key("web"),
        mapping={"version": "v2", "done": 1000, "total": 5000, "rate": 400, "state": "rebuilding"},
    )
    await polled()
    rebuild = page.locator('[data-key="replay"]')
    await expect(rebuild).to_contain_text(
        "v2: 1000 of 5000 updates · 400 updates/s · rebuilding · about 10 s to go"
    )
    await expect(rebuild.locator("progress")).to_have_attribute("value", "20.0")
    await client.hset(replay_key("web"), mapping={"done": 5000, "state": "switched from v1"})
    await polled()
    await expect(rebuild).to_contain_text("5000 of 5000 updates · 400 updates/s · switched from v1")
    await expect(rebuild).not_to_contain_text("to go")
    await client.delete(replay_key("web"))
    await polled()
    await expect(rebuild).to_have_count(0)
    await client.aclose()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "operations-page.png"), full_page=True)


async def test_sign_in_watch_a_story_live_and_sign_out(
    system: tuple[str, str], browser_page: Page
) -> None:
    """A reader limited to one desk's stories: signs in, watches a story live (a quote
    whose text is markup shows as text), signs out, and the stream stops."""
    base, url = system
    page = browser_page
    client = aioredis.Redis.from_url(url)
    log = Log(client, Keys("web", 8))
    story = "desk-markup"
    await log.append(
        [
            encode(update(subject=story, data={"title": "Markup <b>desk</b>"})),
            encode(update(subject="other-desk-story", data={"title": "Not for this desk"})),
        ]
    )
    token = (await bearer(url, "web", "reader", ["desk-"]))["authorization"][7:]
    await sign_in(page, base, token)
    await expect(page.locator("#who")).to_contain_text("(reader)")
    await expect(page.locator('a[href="#/ops"]')).to_have_count(0)  # not for a reader
    await expect(page.locator(f'[data-story="{story}"]')).to_be_visible()
    await expect(page.locator('[data-story="other-desk-story"]')).to_have_count(0)
    await page.goto(f"{base}/#/stories/{story}")
    await expect(page.locator("#live")).to_have_text("live")
    markup = "<img src=x onerror=alert(1)>"
    said = update(
        "dateline.statement.made",
        subject=story,
        data={"statement": "m1", "speaker": "A <i>speaker</i>", "text": markup},
    )
    await log.append([encode(said)])
    quote = page.locator('[data-statement="m1"]')
    await expect(quote).to_contain_text(markup)  # as text: no element was made of it
    await expect(quote.locator("img")).to_have_count(0)
    await page.click(".signout button")
    await expect(page).to_have_url(f"{base}/signin.html?signedout")
    # The session is over: the stream's URL now answers 401, and the page is the sign-in.
    gone = await page.request.get(f"{base}/v1/stories/{story}/live")
    assert gone.status == 401
    await page.goto(f"{base}/#/stories/{story}")
    await expect(page).to_have_url(f"{base}/signin.html?needed")
    await client.aclose()


async def test_the_api_docs_render_under_the_policy_with_nothing_from_elsewhere(
    system: tuple[str, str], browser_page: Page
) -> None:
    base, _ = system
    page = browser_page
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda r: elsewhere.append(r.url) if not r.url.startswith(base) else None,
    )
    await page.goto(f"{base}/v1/docs")
    await expect(page).to_have_url(f"{base}/docs.html")
    await expect(page.locator(".swagger-ui .title")).to_contain_text("dateline query API")
    await expect(page.locator(".opblock-summary-path").first).to_be_visible()
    assert elsewhere == []


async def test_a_storys_statements_and_items_show_in_time_order_across_offsets(
    system: tuple[str, str], page: Page
) -> None:
    """10:00+07:00 (03:00 UTC) comes before 05:00Z, though its text sorts after it: for
    what was said, and for what is scheduled."""
    base, url = system
    client = aioredis.Redis.from_url(url)
    log = Log(client, Keys("web", 8))
    story = "offsets-story"
    for ref, at in (("late", "2026-12-06T05:00:00Z"), ("early", "2026-12-06T10:00:00+07:00")):
        said = {"statement": ref, "speaker": "Offset Person", "text": f"said {ref}"}
        planned = {"item": ref, "title": f"Item {ref}", "starts_at": at}
        await log.append(
            [
                encode(update("dateline.statement.made", subject=story, time=at, data=said)),
                encode(update("dateline.schedule.announced", subject=story, data=planned)),
            ]
        )
    await client.aclose()
    await page.goto(f"{base}/#/stories/{story}")
    for attribute in ("statement", "item"):
        shown = page.locator(f"[data-{attribute}]")
        await expect(shown).to_have_count(2)
        order = await shown.evaluate_all(f"xs => xs.map(x => x.dataset.{attribute})")
        assert order == ["early", "late"], attribute


async def _listed_once_in(
    system: tuple[str, str], updates: list[dict[str, Any]], path: str, prefix: str, count: int
) -> list[str]:
    """`updates` appended in one batch; the list at `path` (as story ids, or story/ref
    for a board) once `count` of its entries start with `prefix`."""
    base, url = system
    client = aioredis.Redis.from_url(url)
    await Log(client, Keys("web", 8)).append([encode(u) for u in updates])
    await client.aclose()
    listed: list[str] = []
    async with httpx.AsyncClient(base_url=base, headers=await bearer(url, "web")) as api:
        for _ in range(200):  # the projector takes a moment
            items = (await api.get(path)).json()["items"]
            listed = [e["id"] if "id" in e else f"{e['story']}/{e['item']['item']}" for e in items]
            if sum(e.startswith(prefix) for e in listed) == count:
                break
            await asyncio.sleep(0.1)
    return listed


async def test_older_stories_are_paged_past_the_live_list(
    system: tuple[str, str], page: Page
) -> None:
    """The live list holds the 200 stories updated last; a newsroom's older ones are a
    click away, a page at a time, each story once, in the API's order."""
    base, _ = system
    ties = [update(subject=f"arch-{n:03}") for n in range(405)]  # one batch: ties
    listed = await _listed_once_in(system, ties, "/v1/stories?limit=10000", "arch-", 405)
    assert len(listed) > 400
    await page.goto(f"{base}/#/")
    rows = page.locator("#stories tr[data-story]")
    await expect(rows).to_have_count(200)
    shown: list[str] = []
    await page.click("#older")
    await expect(page).to_have_url(f"{base}/#/older")
    await expect(page.locator("#live")).to_have_text("not live")
    before = listed[0]
    for _ in range(10):  # pages are disjoint: a page has come when its first row is another
        await expect(rows.first).not_to_have_attribute("data-story", before)
        page_of: list[str] = await rows.evaluate_all("rs => rs.map(r => r.dataset.story)")
        shown, before = shown + page_of, page_of[0]
        if await page.locator("#older").count() == 0:
            break
        await page.click("#older")
        await expect(page).to_have_url(re.compile(r"#/older/[0-9.e+-]+%3A"))
    assert shown == listed[200:]
    await page.click("text=‹ The 200 updated last")
    await expect(rows).to_have_count(200)


async def test_the_schedule_board_is_fetched_a_page_at_a_time(
    system: tuple[str, str], page: Page
) -> None:
    """A newsroom's board runs to tens of thousands of items: each poll fetches a page
    of 500, and the items after it are a click away, each once, in the API's order."""
    base, _ = system
    planned = [
        update(
            "dateline.schedule.announced",
            subject="board-many",
            data={"item": f"i{n:03}", "title": f"Item {n}", "starts_at": "2031-01-01"},
        )
        for n in range(520)
    ]
    board = await _listed_once_in(system, planned, "/v1/schedule", "board-many/", 520)
    assert len(board) >= 520  # and the Hanoi story's items, when its test ran first
    await page.goto(f"{base}/#/schedule")
    rows = page.locator("#board tr[data-board]")
    await expect(rows).to_have_count(500)
    shown: list[str] = await rows.evaluate_all("rs => rs.map(r => r.dataset.board)")
    for _ in range(10):
        if await page.locator("#later").count() == 0:
            break
        first = await rows.first.get_attribute("data-board")
        await page.click("#later")
        await expect(page).to_have_url(re.compile(r"#/schedule/[0-9-]+~"))
        # Pages are disjoint: a page has come when its first row is another.
        await expect(rows.first).not_to_have_attribute("data-board", first or "")
        shown += await rows.evaluate_all("rs => rs.map(r => r.dataset.board)")
    assert shown == board
    await page.click("text=‹ From the earliest")
    await expect(rows).to_have_count(500)


async def test_a_speakers_statements_across_stories_are_a_click_away(
    system: tuple[str, str], page: Page
) -> None:
    """A speaker's name on a story links to what that person said across stories, in
    the API's order, a page of 100 at a time, each statement once."""
    base, url = system
    said = [
        update(
            "dateline.statement.made",
            subject=f"talks-{n % 2}",
            time=f"2031-01-01T{n // 60:02}:{n % 60:02}:00+07:00",
            data={"statement": f"s{n:03}", "speaker": "Paged Speaker", "text": f"Said {n}."},
        )
        for n in range(130)
    ]
    client = aioredis.Redis.from_url(url)
    await Log(client, Keys("web", 8)).append([encode(u) for u in said])
    await client.aclose()
    path = "/v1/speakers/paged%20speaker/statements"
    async with httpx.AsyncClient(base_url=base, headers=await bearer(url, "web")) as api:
        for _ in range(200):  # the projector takes a moment
            items = (await api.get(path)).json()["items"]
            if len(items) == 130:
                break
            await asyncio.sleep(0.1)
    order = [f"{e['story']}/{e['statement']['statement']}" for e in items]
    assert len(order) == 130 and order[:2] == ["talks-0/s000", "talks-1/s001"]
    await page.goto(f"{base}/#/stories/talks-1")
    await page.click("a.speaker >> nth=0")
    await expect(page).to_have_url(re.compile(r"#/speakers/Paged%20Speaker$"))
    await expect(page.locator("h1")).to_have_text("What Paged Speaker said")
    cards = page.locator("#said [data-said]")
    await expect(cards).to_have_count(100)
    await page.screenshot(path=str(ARTIFACTS / "speaker-page.png"), full_page=True)
    shown: list[str] = await cards.evaluate_all("cs => cs.map(c => c.dataset.said)")
    await page.click("#later")
    await expect(page).to_have_url(re.compile(r"#/speakers/Paged%20Speaker/[0-9]+~talks-"))
    await expect(cards).to_have_count(30)
    shown += await cards.evaluate_all("cs => cs.map(c => c.dataset.said)")
    assert shown == order
    assert await page.locator("#later").count() == 0
    await page.click("text=‹ From the first")
    await expect(cards).to_have_count(100)


async def test_the_operations_page_draws_the_lag_and_says_whether_it_is_catching_up(
    browser_page: Page, tmp_path: Path
) -> None:
    """A system of its own, its projector not started: updates waiting, the page says
    stalled and why; once a projector runs, catching up, with about when it will be done;
    then up to date, the lag drawn over the minutes the page was open. Opened again, the
    page draws the minutes before it at once, from the query process's own reads."""
    server = start_server(VALKEY, tmp_path / "redis")
    env = {
        **os.environ,
        "REDIS_URL": server.url,
        "DATELINE_PREFIX": "pace",
        "DATELINE_LAG_TRAIL_S": "1",
    }
    try:
        # Appended before the query process starts: its trail would otherwise hold the
        # burst, and over the page's 10 s the lag would fall behind it before catching up.
        client = aioredis.Redis.from_url(server.url)
        log = Log(client, Keys("pace", 8))
        for n in range(0, 40_000, 1_000):
            await log.append([encode(update(subject=f"p-{n + i}")) for i in range(1_000)])
        await client.aclose()
        with http_service("query", env, tmp_path / "query.log") as base:
            page = browser_page
            await sign_in(page, base, (await bearer(server.url, "pace"))["authorization"][7:])
            await page.goto(f"{base}/#/ops")
            said = page.locator(".pace p")
            await expect(said).to_have_attribute("data-verdict", "stalled")
            await expect(said).to_contain_text(
                re.compile(
                    r"^Stalled: 40,000 behind and nothing projected in \d+ s; "
                    r"no projector process is running \(dateline projector\)$"
                )
            )
            await expect(page.locator(".pace")).to_have_class(re.compile(r"\bbad\b"))
            with background(["projector"], env, tmp_path / "projector.log"):
                await expect(said).to_have_attribute("data-verdict", "catching up", timeout=30_000)
                await expect(said).to_contain_text(
                    re.compile(
                        r"^Catching up: [\d,]+ behind; appended 0/s, projected [\d,]+/s; "
                        r"about \d+ (s|min) to go$"
                    )
                )
                await expect(said).to_have_attribute("data-verdict", "up to date", timeout=60_000)
                await expect(said).to_contain_text(re.compile(r"^Up to date; appended 0/s"))
            # The lag drawn: a point a poll, 40,000 the most behind.
            await expect(page.locator(".pace .axis")).to_contain_text("most behind: 40,000")
            points = await page.locator(".pace polyline").get_attribute("points")
            assert points is not None and len(points.split()) >= 3, points
            tops = [float(xy.split(",")[1]) for xy in points.split()]
            assert min(tops) == 4.0 and tops[-1] == 78.0, tops  # 40,000 at the top, 0 now
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "operations-page-caught-up.png"))
            # Opened anew, every poll of it sees none behind: the 40,000 drawn are the
            # trail's, read by the query process before this page asked.
            await page.goto(f"{base}/#/")
            await page.goto(f"{base}/#/ops")
            await expect(said).to_have_attribute("data-verdict", "up to date")
            await expect(page.locator(".pace .axis")).to_contain_text("most behind: 40,000")
            points = await page.locator(".pace polyline").get_attribute("points")
            assert points is not None and len(points.split()) >= 3, points
    finally:
        server.stop()


async def test_the_pages_pace_is_the_clis_for_any_reports(
    system: tuple[str, str], page: Page
) -> None:
    """The operations page judges the pace with `app.js`'s copy of `runtime/catchup.py`'s
    rule: for 300 sequences of reports made at random (lags up and down, checkpoints that
    move or not, counts exact or not, spans short and long), both say the same verdict,
    rates, time to go and partitions that do not move."""
    base, _ = system
    await page.goto(f"{base}/#/ops")
    await expect(page.locator(".pace p")).to_have_count(1)
    rng = random.Random(17)
    cases: list[list[catchup.Sample]] = []
    for _ in range(300):
        at, appended = 1_000.0, rng.randrange(10_000)
        parts = [
            (rng.choice([None, "1-0"]), rng.randrange(3) * rng.randrange(5_000)) for _ in range(4)
        ]
        reports = []
        for _ in range(rng.randrange(1, 8)):
            at += rng.choice([0.4, 1.0, 2.0, 2.5, 6.0])
            appended += rng.choice([0, 0, rng.randrange(5_000)])
            parts = [
                (f"{int(at)}-{i}", max(0, lag - rng.randrange(4_000)))
                if rng.random() < 0.6
                else (cp, lag + rng.choice([0, 0, rng.randrange(1_000)]))
                for i, (cp, lag) in enumerate(parts)
            ]
            exact = rng.random() < 0.9
            reports.append(
                catchup.sample(
                    at, [appended], [c for c, _ in parts], [lag for _, lag in parts], exact
                )
            )
        cases.append(reports)
    wanted: list[list[Any] | None] = []
    for reports in cases:
        found = catchup.pace(reports)
        wanted.append(
            None
            if found is None
            else [
                str(found.verdict),
                pytest.approx(found.appended_per_s),
                pytest.approx(found.projected_per_s),
                None if found.eta_s is None else pytest.approx(found.eta_s),
                list(found.unmoved),
                list(found.behind),
            ]
        )
    got = await page.evaluate(
        """(cases) => cases.map((reports) => {
            const p = pace(reports);
            return p && [p.verdict, p.appended, p.projected, p.eta, p.unmoved, p.behind];
        })""",
        [
            [
                {
                    "at": s.at,
                    "appended": s.appended,
                    "lag": s.lag,
                    "exact": s.exact,
                    "partitions": [list(x) for x in s.partitions],
                }
                for s in reports
            ]
            for reports in cases
        ],
    )
    assert got == wanted
    verdicts = {w[0] for w in wanted if w is not None}
    assert verdicts == {str(v) for v in catchup.Verdict}, verdicts  # every arm was tried
    assert any(w and w[4] for w in wanted)  # and a partition named


def test_artifacts_dir_is_ignored_by_git() -> None:
    ignored = (Path(__file__).parents[2] / ".gitignore").read_text().split()
    assert "test-artifacts/" in ignored
