"""The projector's flow (`Runner._flow`): a batch is read and prepared while the commit
before it is on the wire, and whatever happens to that commit, every update is applied
once, in order, and the read models equal a rebuild."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis
from redis.cluster import RedisCluster

from dateline.projector.app import Projector
from dateline.projector.handler import Prepared
from dateline.runtime import Delivery
from dateline.store.log import Log
from tests.factories import encode, update
from tests.integration.test_projector import projector, rebuilt, settle, stored_state
from tests.raw import data

pytestmark = pytest.mark.cluster_too

Commit = Callable[[Prepared], Awaitable[dict[str, BaseException] | None]]


class Events(list[str]):
    """What `spy_commits` saw ("prepare", "sent n", "landed n") in its order; `prepared` is
    set at each prepare."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared = asyncio.Event()


def spy_commits(app: Projector, before: Callable[[int, Prepared], Awaitable[None]]) -> Events:
    """Run `before(n, prepared)` ahead of the nth commit (from 1); returns the events."""
    events = Events()
    commit: Commit = app.handler.commit
    prepare = app.handler.prepare
    sent = 0

    async def spied_commit(prepared: Prepared) -> dict[str, BaseException] | None:
        nonlocal sent
        sent += 1
        n = sent
        events.append(f"sent {n}")
        try:
            await before(n, prepared)
            return await commit(prepared)
        finally:
            events.append(f"landed {n}")

    async def spied_prepare(deliveries: list[Delivery]) -> Prepared:
        events.append("prepare")
        events.prepared.set()
        return await prepare(deliveries)

    app.handler.commit = spied_commit  # type: ignore[method-assign]
    app.handler.prepare = spied_prepare  # type: ignore[method-assign]
    return events


async def settle_counting(app: Projector) -> int:
    """`settle`, and the entries the steps said they handed out, in all."""
    total = quiet = 0
    for _ in range(200):
        done = await app.runner.step()
        total += done
        quiet = quiet + 1 if done == 0 else 0
        if quiet >= 2:
            return total
    raise AssertionError("the projector did not settle")


async def prepared_behind(events: Events, n: int) -> None:
    """Hold the nth commit until a batch is prepared behind it (or 5 s, and the test's
    check of the events says none was): the flow's read and prepare on a loaded
    machine's cluster took longer than any fixed sleep the commit could take."""
    while "prepare" not in events[events.index(f"sent {n}") :]:
        events.prepared.clear()
        try:
            async with asyncio.timeout(5):
                await events.prepared.wait()
        except TimeoutError:
            return


def prepared_in_flight(events: list[str], n: int) -> bool:
    """Was a batch prepared between the nth commit's sending and its landing?"""
    if f"sent {n}" not in events or f"landed {n}" not in events:
        return False
    return "prepare" in events[events.index(f"sent {n}") : events.index(f"landed {n}")]


async def all_applied_once(app: Projector, log: Log, stories: list[str], each: int) -> None:
    for story in stories:
        state = await stored_state(app, story)
        assert state == await rebuilt(log, story)
        assert [e.version for e in state.timeline] == list(range(1, each + 1))
    for p in range(log.keys.partitions):
        pending = await log.redis.xpending(log.keys.log(p), app.handler.group)
        assert pending["pending"] == 0


async def test_a_batch_is_prepared_while_the_commit_before_it_is_on_the_wire(
    log: Log, url: str
) -> None:
    app = await projector(log, url, batch=4)

    async def slow(n: int, prepared: Prepared) -> None:
        await asyncio.sleep(0.02)  # the server busy with a long commit
        if n == 1:
            await prepared_behind(events, n)

    events = spy_commits(app, slow)
    stories = [f"s{i}" for i in range(3)]
    try:
        await log.append([encode(update(subject=stories[i % 3])) for i in range(30)])
        await settle(app)
        overlapped = [n for n in range(1, 30) if prepared_in_flight(events, n)]
        assert overlapped, events
        # Prepared from the states the commit before it writes: no conflict of its own.
        assert app.handler.conflicts == 0
        await all_applied_once(app, log, stories, 10)
    finally:
        await app.client.aclose()


async def test_a_commit_that_loses_a_race_drops_the_batch_prepared_after_it(
    log: Log, url: str
) -> None:
    """The batch prepared behind a commit folded from the states that commit would write;
    the commit wrote nothing (another writer stored one of its stories), so that batch
    is dropped, the first is folded anew on the stored state, and both are applied once."""
    other = (RedisCluster if log.cluster else redis.Redis).from_url(url)
    app = await projector(log, url, batch=4)

    async def meddle(n: int, prepared: Prepared) -> None:
        await asyncio.sleep(0.02)
        if n == 2:
            await prepared_behind(events, n)
            key = app.models.story(prepared.stories[0])
            other.set(key, data(other.get(key) or b"") + b" ")  # the same state, other bytes

    events = spy_commits(app, meddle)
    stories = [f"s{i}" for i in range(3)]
    try:
        await log.append([encode(update(subject=stories[i % 3])) for i in range(30)])
        counted = await settle_counting(app)
        assert counted == 30  # the batch handled anew counts, the one dropped once re-read
        assert app.handler.conflicts == 1
        # The batch behind the second commit was prepared before it landed: dropped.
        assert prepared_in_flight(events, 2), events
        await all_applied_once(app, log, stories, 10)
    finally:
        other.close()
        await app.client.aclose()


async def test_a_commit_that_fails_leaves_it_and_the_batch_after_it_for_a_retry(
    log: Log, url: str
) -> None:
    app = await projector(log, url, batch=4)

    async def fail_second(n: int, prepared: Prepared) -> None:
        await asyncio.sleep(0.02)
        if n == 2:
            await prepared_behind(events, n)
            raise redis.ConnectionError("connection lost mid-commit")

    events = spy_commits(app, fail_second)
    stories = [f"s{i}" for i in range(3)]
    try:
        await log.append([encode(update(subject=stories[i % 3])) for i in range(30)])
        await settle(app)
        assert prepared_in_flight(events, 2), events
        await all_applied_once(app, log, stories, 10)
    finally:
        await app.client.aclose()


async def test_keeping_up_a_cycle_reads_prepares_and_commits_in_turn(log: Log, url: str) -> None:
    """A read that comes back short means nothing waits: no flow, even when an update
    comes in as a batch is prepared. (At live rates a flow made cycles smaller and cost
    the projector more CPU an update.)"""
    app = await projector(log, url)

    async def slow(n: int, prepared: Prepared) -> None:
        await asyncio.sleep(0.02)

    events = spy_commits(app, slow)
    prepare = app.handler.prepare
    stories = [f"s{i}" for i in range(3)]
    arrivals = iter(range(1, 6))

    async def arriving(deliveries: list[Delivery]) -> Prepared:
        if (i := next(arrivals, None)) is not None:  # the next update, as this one is prepared
            await log.append([encode(update(subject=stories[i % 3]))])
        return await prepare(deliveries)

    app.handler.prepare = arriving  # type: ignore[method-assign]
    try:
        await log.append([encode(update(subject=stories[0]))])
        await settle(app)
        assert events.count("prepare") == 6
        assert not any(prepared_in_flight(events, n) for n in range(1, 7)), events
        await all_applied_once(app, log, stories, 2)
    finally:
        await app.client.aclose()
