"""The projector on a real server: live read models equal a rebuild, exactly once, poison parks."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
import redis
from redis.cluster import RedisCluster

from dateline.domain import advance_in_place, project
from dateline.domain.evolve import Written
from dateline.domain.positions import Position, stream_id
from dateline.domain.state import StoryState
from dateline.projector import commit
from dateline.projector import handler as handler_module
from dateline.projector.app import Projector, create_app
from dateline.projector.handler import Prepared
from dateline.projector.warmth import Warmth
from dateline.runtime import Delivery, groups
from dateline.runtime import runner as runner_module
from dateline.store import pages
from dateline.store.config import Settings
from dateline.store.connection import open_client
from dateline.store.log import AppendResult, Log, story_of
from dateline_schemas import Update
from tests.factories import DATA, encode, update
from tests.models_help import hash_all, zset_all
from tests.projection_helpers import HANOI
from tests.raw import data, entries_of, items, script_calls, text


def settings(log: Log) -> Settings:
    return Settings(
        None,
        data_dir=None,  # type: ignore[arg-type]  # an embedded server's: none here
        prefix=log.keys.prefix,
        partitions=log.keys.partitions,
    )


async def projector(log: Log, url: str, name: str = "p1", **kw: Any) -> Projector:
    """A projector of `log` on the server, or the cluster, at `url`."""
    client = await open_client(url)
    app = await create_app(settings(log), url, consumer=name, client=client, **kw)
    app.runner.config = dataclasses.replace(app.runner.config, block_ms=20, retry_delay_s=0.0)
    return app


def failing_on(story: str, version: int, on: Callable[[], bool] = lambda: True) -> dict[str, Any]:
    """A projection with a bug: it raises on that update of that story while `on()`, folded
    in place or from the story's history. `projector(log, url, **failing_on(...))`."""

    def advance_fn(state: StoryState, u: Update, said: list[Written]) -> bool:
        if on() and u.subject == story and u.version == version:
            raise RuntimeError("projection bug")
        return advance_in_place(state, u, said)

    def project_fn(name: str, updates: list[Update]) -> StoryState:
        if on() and name == story and any(u.version == version for u in updates):
            raise RuntimeError("projection bug")
        return project(name, updates)

    return {"advance_fn": advance_fn, "project_fn": project_fn}


async def settle(*apps: Projector, rounds: int = 200) -> None:
    """Step every runner until a full round hands out nothing."""
    quiet = 0
    for _ in range(rounds):
        done = sum([await app.runner.step() for app in apps])
        quiet = quiet + 1 if done == 0 else 0
        if quiet >= 2:
            return
    raise AssertionError("the projector did not settle")


async def stored_state(app: Projector, story: str) -> StoryState:
    return await app.models.read_state(app.client, story)


async def rebuilt(log: Log, story: str) -> StoryState:
    return project(story, await log.read_story(story))


pytestmark = pytest.mark.cluster_too  # each server, and the local cluster


@pytest.fixture
async def app(log: Log, url: str) -> AsyncIterator[Projector]:
    app = await projector(log, url)
    yield app
    await app.client.aclose()


async def test_live_read_models_equal_a_rebuild(log: Log, app: Projector) -> None:
    lines = [x for x in HANOI.read_bytes().splitlines() if x.strip()]
    for start in range(0, len(lines), 4):  # the story arrives in several batches
        await log.append(lines[start : start + 4])
        await settle(app)
    for story in ("hanoi-summit-2019", "cohen-hearing-2019"):
        assert await stored_state(app, story) == await rebuilt(log, story)
    index = await hash_all(app.client, app.models, lambda r: r.index)
    assert {k.decode() for k in index} == {"hanoi-summit-2019", "cohen-hearing-2019"}
    kim = await hash_all(app.client, app.models, lambda r: r.speaker("Kim Jong Un"))
    assert list(kim) == [b"hanoi-summit-2019/kim-willing"]
    board = await hash_all(app.client, app.models, lambda r: r.schedule)
    lunch = msgspec.json.decode(board[b"hanoi-summit-2019/working-lunch"])
    assert lunch["item"]["status"] == "cancelled"
    # The board by start time: a range read for one day, the 27th's summit only.
    feb27 = 1551225600  # 2019-02-27T00:00:00Z; day-precision dates mean their UTC day
    region = app.models.region_of("hanoi-summit-2019")
    day = await app.client.zrangebyscore(region.schedule_by_start, feb27, feb27 + 86399)
    assert day == [b"hanoi-summit-2019/summit"]
    starts = await zset_all(app.client, app.models, lambda r: r.schedule_by_start)
    assert len(starts) == len(board)


async def test_a_commit_after_the_server_forgot_its_scripts_is_sent_by_its_text(
    log: Log, app: Projector
) -> None:
    """A restarted or flushed server has no scripts: the commit is sent by its text,
    which loads it as it runs, and is made, once (the commit goes by EVALSHA, not
    through redis-py's script object, which loads it and then calls it again)."""
    await log.append([encode(update(id="u1"))])
    await settle(app)
    await app.client.script_flush()
    await log.append([encode(update(id="u2"))])
    before = await script_calls(app.client)
    await settle(app)
    after = await script_calls(app.client)
    assert after["eval"] - before["eval"] == 1
    assert after["script"] == before["script"]
    story = update()["subject"]
    assert await stored_state(app, story) == await rebuilt(log, story)
    assert (await stored_state(app, story)).version == 2


async def heard_commits(
    app: Projector, partition: int, write: Awaitable[list[AppendResult]]
) -> tuple[list[str], list[AppendResult]]:
    """The doorbell messages of `partition` while `write` is made and the projector
    settles, and what `write` returned: on the one channel (one server), or the
    partition's sharded one (a cluster)."""
    verb, channel = app.handler.bell(partition)
    assert verb == ("SPUBLISH" if app.handler.log.cluster else "PUBLISH")
    async with app.client.pubsub() as pubsub:
        if app.handler.log.cluster:
            await pubsub.ssubscribe(channel)
            get = pubsub.get_sharded_message
        else:
            await pubsub.subscribe(channel)
            get = pubsub.get_message
        written = await write
        await settle(app)
        heard: list[str] = []
        for _ in range(10):  # the subscribe confirmation is read as None too
            if msg := await get(ignore_subscribe_messages=True, timeout=0.1):
                heard.append(pages.split(msg["data"])[0].decode())  # a page, if carried, aside
    return heard, written


async def test_a_commit_announces_its_checkpoint_and_the_stories_it_wrote(
    log: Log, app: Projector
) -> None:
    story = update()["subject"]
    partition = log.keys.partition(story)
    appending = log.append([encode(update(id=f"u{i}")) for i in range(3)])
    heard, results = await heard_commits(app, partition, appending)
    # One partition, so one commit (or more, if the batch was split), ending at the last.
    assert heard
    position, named = heard[-1].split(" ")
    assert position == results[-1].position
    checkpoint = await app.client.hget(app.models.region(partition).checkpoint, str(partition))
    assert position == f"{partition}:{text(checkpoint)}"
    assert named == story


async def test_a_commit_of_many_stories_of_a_partition_names_none(
    log: Log, app: Projector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `commit.NAMED` stories a partition's message is the position alone: a query
    process drops all it keeps of the partition."""
    monkeypatch.setattr(commit, "NAMED", 2)
    stories = [s for s in (f"story-{i}" for i in range(100)) if log.keys.partition(s) == 0][:3]
    appending = log.append([encode(update(subject=s, id=f"u-{s}")) for s in stories])
    heard, _ = await heard_commits(app, 0, appending)
    assert heard and " " not in heard[-1]
    appending = log.append([encode(update(subject=s, id=f"v-{s}")) for s in stories[:2]])
    heard, _ = await heard_commits(app, 0, appending)
    assert sorted(heard[-1].split(" ")[1:]) == sorted(stories[:2])


async def test_out_of_order_times_refold_and_still_equal_a_rebuild(
    log: Log, app: Projector
) -> None:
    times = ["2019-02-28T12:00:00Z", "2019-02-28T09:00:00Z", "2019-02-28T15:00:00Z"]
    for i, t in enumerate(times):
        await log.append([encode(update(time=t, data={"title": f"T{i}"}))])
        await settle(app)
    state = await stored_state(app, "hanoi-summit-2019")
    assert state.title == "T2"
    assert state == await rebuilt(log, "hanoi-summit-2019")
    assert app.handler.refolds == 1  # only the update that sorted before the others


async def test_a_redelivered_update_is_not_applied_twice(log: Log, app: Projector) -> None:
    await log.append([encode(update(subject=f"s{i % 3}")) for i in range(30)])
    await settle(app)
    before = {s: await stored_state(app, s) for s in ("s0", "s1", "s2")}
    # Replay every entry of every partition through the handler again, as a redelivery would.
    for p in range(log.keys.partitions):
        deliveries = [
            Delivery(p, log.keys.log(p), eid.decode(), story_of(f[b"__data__"]), f[b"__data__"])
            for eid, f in entries_of(await log.redis.xrange(log.keys.log(p)))
        ]
        assert await app.handler.handle(deliveries) == {}
    for story, state in before.items():
        after = await stored_state(app, story)
        assert after == state
        assert [e.version for e in after.timeline] == list(range(1, 11))


async def test_poison_parks_one_story_while_others_flow_then_redrive(log: Log, url: str) -> None:
    broken = {"on": True}
    app = await projector(log, url, **failing_on("bad", 2, lambda: broken["on"]))
    try:
        await log.append(
            [encode(update(subject=s, id=f"{s}-{i}")) for i in range(4) for s in ("bad", "good")]
        )
        await settle(app)
        good = await stored_state(app, "good")
        assert good.version == 4
        assert (await stored_state(app, "bad")).version == 1
        parked = await app.runner.dead.entries("bad")
        assert [f["entry"] for _, f in parked] == sorted(
            (f["entry"] for _, f in parked), key=lambda e: tuple(map(int, e.split("-")))
        )
        assert len(parked) == 3
        assert "projection bug" in parked[0][1]["error"]
        assert "Traceback" in parked[0][1]["traceback"]
        assert parked[1][1]["behind"] == f"{log.keys.partition('bad')}:{parked[0][1]['entry']}"
        # Later updates of the parked story park behind it, in order.
        await log.append([encode(update(subject="bad", id="bad-late"))])
        await settle(app)
        assert len(await app.runner.dead.entries("bad")) == 4
        # The fix lands; redrive rebuilds the story from the log and releases it.
        broken["on"] = False
        rebuilt_state = await rebuilt(log, "bad")
        pipe = app.client.pipeline(transaction=True)
        app.models.write(pipe, await stored_state(app, "bad"), rebuilt_state)
        await pipe.execute()
        assert await app.runner.dead.release("bad") == 4
        await log.append([encode(update(subject="bad", id="bad-after"))])
        await settle(app)
        assert await stored_state(app, "bad") == await rebuilt(log, "bad")
        assert (await stored_state(app, "bad")).version == 6
    finally:
        await app.client.aclose()


async def checkpoint_of(app: Projector, partition: int) -> tuple[int, int] | None:
    raw = await app.client.hget(app.models.region(partition).checkpoint, str(partition))
    return None if raw is None else stream_id(text(raw))


async def test_the_checkpoint_never_passes_an_update_that_waits_for_a_retry(
    log: Log, url: str
) -> None:
    """Readers take what is under the checkpoint as settled: a failed update waiting for
    its retry is not, though a later update of its partition was applied."""
    broken = {"on": True}
    app = await projector(log, url, **failing_on("flaky", 1, lambda: broken["on"]))
    p = log.keys.partition("flaky")
    other = next(f"other-{n}" for n in range(1000) if log.keys.partition(f"other-{n}") == p)
    [failing] = await log.append([encode(update(subject="flaky", id="flaky-0"))])
    [later] = await log.append([encode(update(subject=other, id="other-0"))])
    while await app.runner.step() < 2:  # both handed out: one failed, one applied
        pass
    assert (await stored_state(app, other)).version == 1
    at = await checkpoint_of(app, p)
    assert at is None or at < Position.parse(failing.position or "").id
    broken["on"] = False  # the retry succeeds
    await settle(app)
    assert (await stored_state(app, "flaky")).version == 1
    assert await checkpoint_of(app, p) == Position.parse(later.position or "").id
    await app.client.aclose()


async def test_parking_moves_the_checkpoint_past_what_it_parked(log: Log, url: str) -> None:
    """At a partition's end, with no commit to come after: settled all the same."""
    app = await projector(log, url, **failing_on("bad", 2))
    results = await log.append([encode(update(subject="bad", id=f"bad-{i}")) for i in range(3)])
    await settle(app)
    assert len(await app.runner.dead.entries("bad")) == 2  # the failure and the one behind
    last = Position.parse(results[2].position or "")
    assert await checkpoint_of(app, last.partition) == last.id
    # A later update of the story parks behind at once, and is passed at once too.
    [behind] = await log.append([encode(update(subject="bad", id="bad-3"))])
    await settle(app)
    assert await checkpoint_of(app, last.partition) == Position.parse(behind.position or "").id
    await app.client.aclose()


async def test_a_second_projector_takes_over_a_dead_ones_partitions(log: Log, url: str) -> None:
    first = await projector(log, url, name="first")
    first.runner.leases.ttl_ms = 1000
    await first.runner.step()  # takes every lease
    assert len(first.runner.owned) == log.keys.partitions
    # It reads a batch and dies before acknowledging: the entries stay pending, leases expire.
    await log.append([encode(update(subject=f"s{i}")) for i in range(20)])
    for p in first.runner.owned.values():
        await groups.read(
            first.client, first.runner.config.group, "first", {p.stream: ">"}, 100, None
        )
    await first.client.aclose()
    second = await projector(log, url, name="second")
    await second.runner.step()
    assert second.runner.owned == {}  # the dead one's leases still hold
    await asyncio.sleep(1.1)
    second.runner._leases_checked = 0
    await settle(second)
    assert len(second.runner.owned) == log.keys.partitions
    for i in range(20):
        assert await stored_state(second, f"s{i}") == await rebuilt(log, f"s{i}")
    await second.client.aclose()


async def check_leases(*apps: Projector) -> None:
    """Each runner's next step looks at its leases and the members at once."""
    for app in apps:
        app.runner._leases_checked = 0
        await app.runner.step()


async def test_two_projectors_share_the_partitions_and_hand_them_back(log: Log, url: str) -> None:
    a = await projector(log, url, name="a")
    b = await projector(log, url, name="b")
    await a.runner.step()  # alone: takes every partition
    assert len(a.runner.owned) == log.keys.partitions
    await b.runner.step()  # a second member: its share is half, but all are held
    assert b.runner.owned == {}
    await check_leases(a, b)  # a gives back the half over its share; b takes it
    half = log.keys.partitions // 2
    assert sorted(a.runner.owned) == list(range(half))
    assert sorted(b.runner.owned) == list(range(half, log.keys.partitions))
    stories = [f"s{i}" for i in range(40)]
    await log.append([encode(update(subject=s, id=f"{s}-{v}")) for v in range(3) for s in stories])
    # b reads a batch and stops before it applies it: its entries are pending.
    for p in b.runner.owned.values():
        await groups.read(b.client, b.runner.config.group, "b", {p.stream: ">"}, 100, None)
    stop = asyncio.Event()
    stop.set()
    await b.runner.run(stop)  # a clean stop: leases released, membership left
    assert await b.client.zrange(b.runner.leases.members, 0, -1) == [b"a"]
    await check_leases(a)  # alone again: takes b's partitions and their pending entries
    assert len(a.runner.owned) == log.keys.partitions
    await settle(a)
    for story in stories:
        assert await stored_state(a, story) == await rebuilt(log, story)
        assert (await stored_state(a, story)).version == 3
    for app in (a, b):
        await app.client.aclose()


async def test_three_projectors_split_the_partitions_and_settle(log: Log, url: str) -> None:
    apps = [await projector(log, url, name=name) for name in "abc"]
    for app in apps:
        await app.runner.step()  # the first takes all; the others find them held
    await check_leases(*apps)
    owned = [set(app.runner.owned) for app in apps]
    share = -(-log.keys.partitions // 3)
    assert sorted(map(len, owned), reverse=True)[:2] == [share, share]
    assert set().union(*owned) == set(range(log.keys.partitions))
    assert sum(map(len, owned)) == log.keys.partitions
    # The one with fewer waits for nobody to hand any over: it does not look every 0.5 s.
    assert {app.runner._lease_check_s for app in apps} == {
        apps[0].runner.config.lease_ttl_ms / 3000
    }
    for app in apps:
        await app.client.aclose()


async def test_a_rebuild_during_a_batch_makes_the_batch_retry(log: Log, url: str) -> None:
    """The commit is fenced on what the batch read: a state written by anyone else in
    between makes it write nothing; the batch is folded again on the stored state."""
    # A second client, as an operator's rebuild would be.
    other = (RedisCluster if log.cluster else redis.Redis).from_url(url)
    interfere = {"once": True}
    holder: dict[str, Projector] = {}

    def meddling(state: StoryState, u: Update, said: list[Written]) -> bool:
        if interfere["once"] and u.version == 3:
            interfere["once"] = False
            key = holder["app"].models.story(u.subject)
            # Between the batch's read and its commit: the same state, other bytes.
            other.set(key, data(other.get(key) or b"") + b" ")
        return advance_in_place(state, u, said)

    app = await projector(log, url, advance_fn=meddling)
    holder["app"] = app
    try:
        await log.append([encode(update()) for _ in range(2)])
        await settle(app)
        await log.append([encode(update()) for _ in range(3)])
        await settle(app)
        assert interfere["once"] is False
        assert app.handler.conflicts == 1  # the batch lost the race once, and was folded again
        assert await stored_state(app, "hanoi-summit-2019") == await rebuilt(
            log, "hanoi-summit-2019"
        )
        assert (await stored_state(app, "hanoi-summit-2019")).version == 5
    finally:
        other.close()
        await app.client.aclose()


async def test_the_next_batch_builds_on_a_state_another_writer_stored(
    log: Log, app: Projector
) -> None:
    """The projector keeps the states it wrote; one rewritten meanwhile (by an operator's
    rebuild, a projector that took the partition over) is read again, not overwritten."""
    await log.append([encode(update(data={"title": "As filed"}))])
    await settle(app)
    fixed = await stored_state(app, "hanoi-summit-2019")
    fixed.title = "As fixed by the desk"
    async with app.client.pipeline(transaction=True) as pipe:
        app.models.write(pipe, await stored_state(app, "hanoi-summit-2019"), fixed)
        await pipe.execute()
    await log.append([encode(update("dateline.statement.made"))])
    await settle(app)
    state = await stored_state(app, "hanoi-summit-2019")
    assert state.version == 2
    assert state.title == "As fixed by the desk"


def said(n: int, minute: int, source: str = "urn:feed:test") -> bytes:
    data = {**DATA["dateline.statement.made"], "statement": f"s{n}", "text": f"Words {n}"}
    data.pop("in_reply_to")
    return encode(
        update(
            "dateline.statement.made",
            subject="talks",
            data=data,
            source=source,
            time=f"2019-02-28T13:{minute:02d}:00+07:00",
        )
    )


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "read-again"])
async def test_a_commit_writes_the_statements_that_changed_not_all_of_them(
    log: Log, app: Projector, kept: bool
) -> None:
    """A story's statements are a list of their own: a new one is appended, one that
    changed is rewritten in place, the others are not written at all. A refold, which
    can reorder them, writes them all again. Read back, the state equals a rebuild."""
    key = app.models.statements("talks")
    await log.append([said(n, 10 + n) for n in (1, 2, 3)])
    await settle(app)
    stored_state_json = data(await app.client.get(app.models.story("talks")))
    assert msgspec.json.decode(stored_state_json)["statements"] == {}
    first = data(await app.client.lindex(key, 0))
    untouched = first.replace(b"Words 1", b"Not written again")
    await app.client.lset(key, 0, untouched)  # type: ignore[arg-type]  # a mark a rewrite would wipe
    if not kept:
        app.handler.kept.clear()  # the next batch reads the state and its statements
    await log.append([said(4, 20), said(2, 21, source="urn:feed:other")])  # new; a duplicate
    await settle(app)
    stored = items(await app.client.lrange(key, 0, -1))
    expected = msgspec.json.decode(msgspec.json.encode((await rebuilt(log, "talks")).statements))
    assert list(expected) == ["s1", "s2", "s3", "s4"]
    del expected["s1"]
    got = msgspec.json.decode(b"{" + b",".join(stored[1:]) + b"}")
    assert list(got.items()) == list(expected.items())
    assert stored[0] == untouched
    assert len(expected["s2"]["sources"]) == 2  # merged

    await log.append([said(0, 5)])  # late: it sorts first, so the story is refolded
    await settle(app)
    state = await stored_state(app, "talks")
    assert state == await rebuilt(log, "talks")
    assert list(state.statements) == ["s0", "s1", "s2", "s3", "s4"]
    assert b"Not written again" not in b"".join(items(await app.client.lrange(key, 0, -1)))


async def test_the_projector_keeps_a_bounded_number_of_states(log: Log, app: Projector) -> None:
    """Past `keep` stories the least recent are dropped, and read again when needed."""
    app.handler.kept.size = 2
    for title in ("first", "second"):
        await log.append(
            [encode(update(subject=f"s{i}", data={"title": f"{title} {i}"})) for i in range(5)]
        )
        await settle(app)
    assert len(app.handler.kept) == 2
    for i in range(5):
        state = await stored_state(app, f"s{i}")
        assert state == await rebuilt(log, f"s{i}")
        assert (state.version, state.title) == (2, f"second {i}")


def cycle_sizes(app: Projector) -> list[int]:
    """The number of updates each cycle hands the handler, from now on."""
    sizes: list[int] = []
    prepare = app.handler.prepare  # each cycle's batch, handled or sent in a flow

    async def counted(deliveries: list[Delivery]) -> Prepared:
        sizes.append(len(deliveries))
        return await prepare(deliveries)

    app.handler.prepare = counted  # type: ignore[method-assign]
    return sizes


async def test_a_cycle_reads_at_most_batch_updates_over_all_partitions(log: Log, url: str) -> None:
    """A batch's states are in memory at once: `batch` bounds a cycle, not a partition."""
    app = await projector(log, url, batch=16)
    sizes = cycle_sizes(app)
    stories = [f"s{i}" for i in range(40)]  # over every partition
    assert len({log.keys.partition(s) for s in stories}) == log.keys.partitions
    await log.append([encode(update(subject=s, data={"title": s})) for s in stories])
    await settle(app)
    assert sum(sizes) == 40
    assert max(sizes) <= 16
    for s in stories:
        assert await stored_state(app, s) == await rebuilt(log, s)
    await app.client.aclose()


def partitions_by_cycle(app: Projector) -> list[dict[int, int]]:
    """The updates each cycle hands the handler, by partition, from now on."""
    cycles: list[dict[int, int]] = []
    prepare = app.handler.prepare

    async def counted(deliveries: list[Delivery]) -> Prepared:
        cycles.append({})
        for d in deliveries:
            cycles[-1][d.partition] = cycles[-1].get(d.partition, 0) + 1
        return await prepare(deliveries)

    app.handler.prepare = counted  # type: ignore[method-assign]
    return cycles


async def test_while_partitions_are_behind_one_at_a_time_takes_most_of_a_cycle(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catching up, a cycle meets each of its stories several times, not once: one
    partition in turn reads most of it, the others a little each, and all of them
    move on every cycle. (Behind: full reads of entries older than `BEHIND_S`; here
    any age, the entries being fresh.)"""
    monkeypatch.setattr(runner_module, "BEHIND_S", -1.0)
    app = await projector(log, url, batch=64)
    cycles = partitions_by_cycle(app)
    stories = [f"s{i}" for i in range(40)]
    assert len({log.keys.partition(s) for s in stories}) == log.keys.partitions
    for v in range(30):
        await log.append(
            [encode(update(subject=s, id=f"{s}-{v}", data={"title": f"{v}"})) for s in stories]
        )
    await settle(app)
    assert sum(sum(c.values()) for c in cycles) == 30 * len(stories)
    even = 64 // log.keys.partitions
    assert cycles[0] == dict.fromkeys(range(log.keys.partitions), even)  # none known behind
    # Until the last cycles (the partitions run out), every partition reads each cycle,
    # one of them 64 less one for each of the others.
    full = [c for c in cycles[1:] if sum(c.values()) == 64]
    assert len(full) >= len(cycles) - 1 - log.keys.partitions
    for c in full:
        assert len(c) == log.keys.partitions
        assert max(c.values()) == 64 - (log.keys.partitions - 1)
    assert {max(c, key=c.__getitem__) for c in full} == set(range(log.keys.partitions))
    for s in stories:
        assert await stored_state(app, s) == await rebuilt(log, s)
    await app.client.aclose()


async def test_keeping_up_every_partition_is_read_evenly(log: Log, url: str) -> None:
    """Full reads of entries that have not waited `BEHIND_S` are a projector keeping up:
    no partition takes a cycle over, so no partition's entries wait for its turn."""
    app = await projector(log, url, batch=64)
    cycles = partitions_by_cycle(app)
    stories = [f"s{i}" for i in range(40)]
    for v in range(10):
        await log.append([encode(update(subject=s, id=f"{s}-{v}")) for s in stories])
    await settle(app)
    assert sum(sum(c.values()) for c in cycles) == 10 * len(stories)
    assert max(n for c in cycles for n in c.values()) == 64 // log.keys.partitions
    await app.client.aclose()


STATEMENT = "dateline.statement.made"


async def test_the_states_a_projector_keeps_decoded_are_the_operators_setting(
    log: Log, url: str
) -> None:
    """DATELINE_PROJECTOR_WARM_MB: an operator with many long, hot stories gives the
    projector room to keep them decoded; a story past it is decoded every update."""
    client = await open_client(url)
    small = dataclasses.replace(settings(log), projector_warm_mb=1)
    app = await create_app(small, url, consumer="p1", client=client)
    assert app.handler.kept.warm_parts == commit.warm_parts(1) < commit.WARM_PARTS
    stories = [f"long{i}" for i in range(4)]
    said = {"speaker": "Kim Jong Un", "text": "Words"}
    for v in range(0, 500, 100):
        await log.append(
            [
                encode(update(STATEMENT, subject=s, data={**said, "statement": f"s{v + i}"}))
                for s in stories
                for i in range(100)
            ]
        )
    await settle(app)
    # 1 MB holds 1,500 parts: of four stories of 500 statements, two stay decoded.
    assert app.handler.kept.parts <= commit.warm_parts(1)
    assert len(app.handler.kept.warm) == 2
    await app.client.aclose()


async def test_a_warm_tier_too_small_for_the_stories_in_play_says_so(log: Log, url: str) -> None:
    """Past the warm tier each update decodes its story's state again, which costs the
    projector CPU and nothing else shows: the states are counted by where they were
    found, and a window that decoded too many again logs a warning naming the setting."""
    from prometheus_client import REGISTRY  # noqa: PLC0415
    from structlog.testing import capture_logs  # noqa: PLC0415

    def found(where: str) -> float:
        value = REGISTRY.get_sample_value("dateline_projector_states_total", {"found": where})
        return value or 0.0

    client = await open_client(url)
    small = dataclasses.replace(settings(log), projector_warm_mb=1)
    app = await create_app(small, url, consumer="p1", client=client)
    stories = [f"long{i}" for i in range(4)]
    said = {"speaker": "Kim Jong Un", "text": "Words"}

    async def statements(first: int, each: int) -> None:
        await log.append(
            [
                encode(update(STATEMENT, subject=s, data={**said, "statement": f"s{v}"}))
                for v in range(first, first + each)
                for s in stories
            ]
        )

    for first in range(0, 500, 100):  # four stories of 500 statements: two fit 1 MB
        await statements(first, 100)
    await settle(app)
    before = {where: found(where) for where in ("warm", "packed", "read")}
    app.handler.warmth = Warmth(window_s=0, least=4)
    with capture_logs() as logs:
        for v in range(500, 510):  # a batch of the four: two cooled while two were kept
            await statements(v, 1)
            assert await app.runner.step() == len(stories)
    grew = {where: found(where) - before[where] for where in before}
    assert grew == {"warm": 20, "packed": 20, "read": 0}
    warnings = [e for e in logs if "DATELINE_PROJECTOR_WARM_MB" in e["event"]]
    assert warnings and warnings[-1]["log_level"] == "warning"
    assert warnings[-1]["warm_stories"] == 2 and warnings[-1]["decoded_again"] > 0.25
    await app.client.aclose()


async def test_stories_in_play_past_the_kept_states_are_read_again_and_it_says_so(
    log: Log, url: str
) -> None:
    """Past what a projector keeps (`DATELINE_PROJECTOR_KEEP_MB`, its count as well as
    its size), a story that comes round was dropped and is read from the store again,
    dropping another: the drops are counted, and a window of them logs a warning that
    names the setting. At 1 MB a projector keeps 312 packed states and 64 decoded: of
    800 stories taken in turn, 40 a batch, each is read again and drops one."""
    from prometheus_client import REGISTRY  # noqa: PLC0415
    from structlog.testing import capture_logs  # noqa: PLC0415

    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    client = await open_client(url)
    small = dataclasses.replace(settings(log), projector_warm_mb=1, projector_keep_mb=1)
    app = await create_app(small, url, consumer="p1", client=client)
    assert app.handler.kept.size == 312 + 64
    stories = [f"many{i:03d}" for i in range(800)]
    said = {"speaker": "Kim Jong Un", "text": "Words"}

    async def in_turn(statement: str) -> None:
        for n in range(0, len(stories), 40):
            some = stories[n : n + 40]
            data = {**said, "statement": statement}
            await log.append([encode(update(STATEMENT, subject=s, data=data)) for s in some])
            assert await app.runner.step() == len(some)

    await in_turn("s1")
    read = count("dateline_projector_states_total", found="read")
    dropped = count("dateline_projector_states_dropped_total")
    app.handler.warmth = Warmth(window_s=0, least=4)
    with capture_logs() as logs:
        await in_turn("s2")
    assert count("dateline_projector_states_total", found="read") - read == 800
    # A batch's drops are counted at the next: the first round's last 40 here, this
    # round's last 40 at the next batch.
    assert count("dateline_projector_states_dropped_total") - dropped == 800
    warnings = [e for e in logs if "DATELINE_PROJECTOR_KEEP_MB" in e["event"]]
    assert warnings and warnings[-1]["log_level"] == "warning"
    assert warnings[-1]["keep_mb"] == 1.0 and warnings[-1]["dropped_share"] == 1.0
    await app.client.aclose()


async def test_a_cycle_reads_fewer_updates_as_the_states_it_touches_grow(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle's states are bounded in bytes: big states, small cycles. (Those it must
    decode: here none stays decoded between cycles.)"""
    monkeypatch.setattr(handler_module, "CYCLE_BYTES", 3_000)
    monkeypatch.setattr(handler_module, "MIN_CYCLE", 1)
    app = await projector(log, url, batch=1000)
    app.handler.kept.warm_size = 0
    sizes = cycle_sizes(app)
    stories = [f"big{i}" for i in range(8)]
    # States of 1.5 KB and growing: a cycle of 3 KB holds one or two.
    title = "t" * 1500
    await log.append([encode(update(subject=s, data={"title": title})) for s in stories])
    await settle(app)
    for n in range(8):  # the estimate follows the last cycles' states
        said = {"statement": f"s{n}", "speaker": "Kim Jong Un", "text": f"said {n}"}
        await log.append(
            [encode(update("dateline.statement.made", subject=s, data=said)) for s in stories]
        )
        await settle(app)
    assert app.handler.state_bytes > 1500
    assert app.handler.cycle(1000) == 1
    # One a partition at least: a round of 8 in cycles of 4 partitions' one each, where
    # the first round, before any size was known, went in one cycle of 8.
    assert max(sizes[-8:]) == log.keys.partitions < max(sizes) == len(stories)
    for s in stories:
        assert await stored_state(app, s) == await rebuilt(log, s)
    await app.client.aclose()


async def test_states_kept_decoded_do_not_shrink_a_cycle(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stories written last stay decoded (`Kept`): a cycle over them decodes nothing."""
    monkeypatch.setattr(handler_module, "CYCLE_BYTES", 3_000)
    app = await projector(log, url, batch=1000)
    stories = [f"big{i}" for i in range(8)]
    await log.append([encode(update(subject=s, data={"title": "t" * 1500})) for s in stories])
    await settle(app)
    await log.append([encode(update(subject=s, data={"title": "u" * 1500})) for s in stories])
    await settle(app)
    assert sorted(app.handler.kept.warm) == stories
    assert app.handler.state_bytes == 0
    assert app.handler.cycle(1000) == 1000
    for s in stories:
        assert await stored_state(app, s) == await rebuilt(log, s)
    await app.client.aclose()


async def test_a_failure_half_way_through_an_update_leaves_no_trace(log: Log, url: str) -> None:
    """An update whose projection raises after changing part of the state: the earlier
    updates of the same batch stay applied, and nothing of the failing one is written."""

    def half_done(state: StoryState, u: Update, said: list[Written]) -> bool:
        if u.version == 3:
            state.title = "HALF WRITTEN"  # a projection bug that fails part-way through
            raise RuntimeError("projection bug after a partial change")
        return advance_in_place(state, u, said)

    app = await projector(log, url, advance_fn=half_done)
    try:
        await log.append([encode(update(data={"title": f"T{i}"})) for i in range(1, 5)])
        await settle(app)
        state = await stored_state(app, "hanoi-summit-2019")
        assert state.title == "T2"
        assert state.version == 2
        assert state == project(
            "hanoi-summit-2019", await log.read_story("hanoi-summit-2019", to_version=2)
        )
        parked = await app.runner.dead.entries("hanoi-summit-2019")
        assert [int(msgspec.json.decode(f["record"])["version"]) for _, f in parked] == [3, 4]
    finally:
        await app.client.aclose()


async def test_an_entry_whose_acknowledgement_was_lost_is_read_again(
    log: Log, app: Projector
) -> None:
    """An entry pending for the projector though no cycle holds it (a replica promoted
    without the acknowledgement, a failover redis-py's retries hid): the next lease check
    finds it and reads it again, and the checkpoint, which waited behind it, moves on.
    Without that it stayed pending, and live streams and read-your-writes stalled."""
    story = "s-lost"
    await log.append([encode(update(subject=story, id="s-1"))])
    await settle(app)
    [second] = await log.append([encode(update(subject=story, id="s-2"))])
    assert second.position is not None
    partition = Position.parse(second.position).partition
    its_id = stream_id(second.position.split(":")[1])
    stream = log.keys.log(partition)
    # Delivered to the projector's consumer, and its acknowledgement never came back.
    await groups.read(app.client, app.runner.config.group, "p1", {stream: ">"}, 10, None)
    await log.append([encode(update(subject=neighbour_of(log, story), id="n-1"))])
    await settle(app)
    assert (await app.client.xpending(stream, app.runner.config.group))["pending"] == 1
    before = await checkpoint_of(app, partition)
    assert before is not None and before < its_id
    await check_leases(app)
    await settle(app)
    assert (await app.client.xpending(stream, app.runner.config.group))["pending"] == 0
    after = await checkpoint_of(app, partition)
    assert after is not None and after >= its_id
    assert (await stored_state(app, story)).version == 2


def neighbour_of(log: Log, story: str) -> str:
    """Another story of the same partition."""
    return next(
        f"n{i}" for i in range(99) if log.keys.partition(f"n{i}") == log.keys.partition(story)
    )


async def test_commits_take_how_far_the_runner_was_delivered(log: Log, url: str) -> None:
    """On one server a commit moves the checkpoint to the last entry the runner's reads
    returned rather than asking the group (`XINFO GROUPS`): the same id. Unknown before
    the first read and after a failure; on a cluster, whose failovers the client hides,
    the commits always ask."""
    app = await projector(log, url)
    group = app.runner.config.group
    try:
        await app.runner.step()  # the leases, and a read of nothing yet
        assert all(app.runner.delivered(p) is None for p in range(log.keys.partitions))
        await log.append([encode(update(subject=f"s{i}")) for i in range(24)])
        await settle(app)
        used = [p for p in range(log.keys.partitions) if app.runner.delivered(p) is not None]
        assert used
        for p in used:
            [info] = await app.client.xinfo_groups(log.keys.log(p))
            assert info["name"] == group.encode()
            last = text(info["last-delivered-id"])
            assert app.runner.delivered(p) == last
            assert await checkpoint_of(app, p) == stream_id(last)
        told = app.handler.delivered(used[0])
        assert told == (None if log.cluster else app.runner.delivered(used[0]))
        commit = app.handler.commit

        async def lost(prepared: Prepared) -> dict[str, BaseException] | None:
            app.handler.commit = commit  # type: ignore[method-assign]
            raise redis.ConnectionError("connection lost mid-commit")

        app.handler.commit = lost  # type: ignore[method-assign]
        await log.append([encode(update(subject="s0"))])
        await app.runner.step()
        assert all(app.runner.delivered(p) is None for p in range(log.keys.partitions))
        await settle(app)
        p = log.keys.partition("s0")
        [info] = await app.client.xinfo_groups(log.keys.log(p))
        assert await checkpoint_of(app, p) == stream_id(text(info["last-delivered-id"]))
        assert (await stored_state(app, "s0")).version == 2
    finally:
        await app.client.aclose()


async def test_an_entry_claimed_past_what_the_runner_was_delivered_has_the_group_asked(
    log: Log, url: str
) -> None:
    """Another consumer was delivered further and its entries came to this one (the
    lease's last holder, claimed): the runner's last read no longer says how far the
    group delivered, and the checkpoint must pass what it now applies."""
    app = await projector(log, url)
    group = app.runner.config.group
    story = "claimed"
    p = log.keys.partition(story)
    stream = log.keys.log(p)
    try:
        await log.append([encode(update(subject=story, id="c-1"))])
        await settle(app)
        assert app.runner.delivered(p) is not None or log.cluster
        [second] = await log.append([encode(update(subject=story, id="c-2"))])
        await groups.read(app.client, group, "other", {stream: ">"}, 10, None)
        its_id = (second.position or "").split(":")[1]
        await app.client.xclaim(stream, group, "p1", 0, [its_id])
        app.runner.owned[p].drain_from = "0"
        await settle(app)
        assert app.runner.delivered(p) is None
        assert await checkpoint_of(app, p) == stream_id(its_id)
        assert (await stored_state(app, story)).version == 2
    finally:
        await app.client.aclose()
