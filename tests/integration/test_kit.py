"""The FastStream kit on a real server: the group at 0, pending entries first, retries in
order, poison parked, one process at a time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from dateline.domain.positions import stream_id
from dateline.kit import Batch, DatelineLog
from dateline.runtime import groups, status
from dateline.runtime.leases import Leases
from dateline.store.deadletters import DeadLetters
from dateline.store.layout import DELIVER_GROUP
from dateline.store.log import Log
from dateline_schemas import Update
from dateline_schemas.story import StoryOpened
from tests.conftest import VALKEY, start_server
from tests.e2e.processes import DATELINE, free_port
from tests.factories import encode, update
from tests.raw import entries_of

STATEMENT = "dateline.statement.made"


pytestmark = pytest.mark.cluster_too  # each server, and the local cluster


async def until(check: Callable[[], Awaitable[bool] | bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()
        if found if isinstance(found, bool) else await found:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def statement(story: str, ref: str) -> bytes:
    return encode(
        update(
            STATEMENT,
            subject=story,
            id=f"{story}-{ref}",
            data={"statement": ref, "speaker": "Kim Jong Un", "text": f"said {ref}"},
        )
    )


def kit_for(log: Log, url: str, **kw: object) -> DatelineLog:
    options: dict[str, object] = {
        "group": "cms",
        "retry_s": 0.05,
        "max_attempts": 3,
        "lease_ttl_ms": 1000,
    }
    return DatelineLog(url, prefix=log.keys.prefix, **(options | kw))  # type: ignore[arg-type]


def recorded(kit: DatelineLog) -> list[str]:
    """The ids of the updates the app of `kit` handles, in order: a handler for every type."""
    seen: list[str] = []

    @kit.on()
    async def record(u: Update) -> None:
        seen.append(u.id)

    return seen


async def pending(log: Log, group: str = "cms") -> int:
    return sum([await groups.pending_count(log.redis, s, group) for s in log.keys.logs()])


async def test_updates_from_before_the_group_existed_reach_typed_handlers(
    log: Log, url: str
) -> None:
    await log.append([encode(update(subject="a-story", id="open")), statement("a-story", "s1")])
    kit = kit_for(log, url)
    opened: list[str] = []
    every: list[str] = []

    @kit.handler
    async def on_open(u: StoryOpened) -> None:
        opened.append(u.id)

    @kit.on()
    async def on_any(u: Update) -> None:
        every.append(u.id)

    app = kit.app()
    await app.start()
    try:
        await log.append([statement("a-story", "s2")])
        await until(lambda: len(every) == 3)
        assert opened == ["open"]
        assert every == ["open", "a-story-s1", "a-story-s2"]
        await until(_zero(log))
    finally:
        await app.stop()


async def test_a_stopped_app_leaves_no_task_reading_the_log(log: Log, url: str) -> None:
    """FastStream's reading tasks end with the app: one left (its cancellation lost, most
    likely) read on and logged "Message fetch error" once its connection closed. Started
    and stopped in turn, with entries on the way; only this round's tasks are counted."""
    for n in range(6):
        before = asyncio.all_tasks()
        kit = kit_for(log, url)
        seen = recorded(kit)

        app = kit.app()
        await app.start()
        try:
            await log.append([statement("a-story", f"r{n}")])
            await until(lambda: f"a-story-r{n}" in seen)  # noqa: B023 - this round's
        finally:
            await app.stop()
        await asyncio.sleep(0.05)
        left = [t for t in asyncio.all_tasks() - before if "_consume" in repr(t.get_coro())]
        assert left == [], f"round {n}: {left}"


async def test_a_lease_not_given_back_at_stop_is_said(log: Log, url: str) -> None:
    """The next process waits for the lease to lapse: the stop says why, and how long.
    (A server out of reach is said where it was met, and not again here.)"""
    kit = kit_for(log, url)
    recorded(kit)
    app = kit.app()
    await app.start()
    release = kit._lease.release

    async def refused(partition: int) -> None:
        await release(partition)
        raise aioredis.ResponseError("NOPERM this user has no permissions to run 'fcall'")

    kit._lease.release = refused  # type: ignore[method-assign]
    with capture_logs() as logs:
        await app.stop()
    said = [e for e in logs if e["event"].startswith("the lease was not given back")]
    assert [(e["group"], e["lapses_in_ms"], e["log_level"]) for e in said] == [
        ("cms", 1000, "warning")
    ]
    assert "NOPERM" in said[0]["error"]


async def test_a_process_that_cannot_leave_the_members_at_its_stop_says_so(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It stays named (a standby that is gone) until its heartbeat runs out: said."""

    async def refused(self: Leases) -> None:
        raise aioredis.ResponseError("NOPERM this user has no permissions to run 'zrem'")

    monkeypatch.setattr(Leases, "leave", refused)
    kit = kit_for(log, url)
    recorded(kit)
    app = kit.app()
    await app.start()
    with capture_logs() as logs:
        await app.stop()
    said = [e for e in logs if e["event"].startswith("this process stays named")]
    assert [(e["group"], e["lapses_in_ms"], e["log_level"]) for e in said] == [
        ("cms", 1000, "warning")
    ]
    assert "NOPERM" in said[0]["error"]


async def test_a_user_that_may_not_say_it_is_alive_is_said_once_and_works_on(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ACL older than `deploy/users.acl`'s (the deliver user without ZADD): the process
    is not named among the group's, says so once, and reads as before."""

    async def refused(self: Leases) -> int:
        raise aioredis.ResponseError(
            "ERR Error running script: The user executing the script can't run this command "
            "or subcommand script: heartbeat.lua, on @user_script:10."
        )

    monkeypatch.setattr(Leases, "heartbeat", refused)
    kit = kit_for(log, url, lease_ttl_ms=300)
    seen = recorded(kit)
    app = kit.app()
    with capture_logs() as logs:
        await app.start()
        try:
            await log.append([statement("a-story", "s1")])
            await until(lambda: len(seen) == 1)
            await asyncio.sleep(0.3)  # a few renewals of the lease
        finally:
            await app.stop()
    said = [e for e in logs if e["event"].startswith("this process is not named")]
    assert [(e["group"], e["log_level"]) for e in said] == [("cms", "warning")]
    assert "can't run this command" in said[0]["error"]


def _zero(log: Log) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await pending(log) == 0

    return check


async def test_a_failure_is_retried_before_anything_later_of_its_partition(
    log: Log, url: str
) -> None:
    kit = kit_for(log, url, partitions=None)
    seen: list[str] = []
    failures = {"a-story-s2": 2}

    @kit.on()
    async def handle(u: Update) -> None:
        if failures.get(u.id, 0) > 0:
            failures[u.id] -= 1
            raise RuntimeError(f"the CMS is down for {u.id}")
        seen.append(u.id)

    app = kit.app()
    await app.start()
    try:
        await log.append([statement("a-story", f"s{n}") for n in range(1, 6)])
        await until(lambda: len(seen) == 5)
        assert seen == [f"a-story-s{n}" for n in range(1, 6)]
        await until(_zero(log))
        assert not await DeadLetters(log.redis, log.keys.prefix, "cms").entries()
    finally:
        await app.stop()


async def test_poison_is_parked_with_its_story_behind_it_and_the_rest_goes_on(
    log: Log, url: str
) -> None:
    async with _parked_story(log, url) as (_, seen):
        await log.append([statement("b-story", "s2")])
        await until(lambda: len(seen) == 3)
        await until(_zero(log))
        # Partitions go side by side; within a story, log order.
        assert sorted(seen) == ["a-story-s1", "b-story-s1", "b-story-s2"]
        assert [x for x in seen if x.startswith("b-")] == ["b-story-s1", "b-story-s2"]
        dead = DeadLetters(log.redis, log.keys.prefix, "cms")
        parked = await dead.entries()
        assert [f["error"] for _, f in parked] == [
            "ValueError('cannot map a-story-s2')",
            "parked behind an earlier update of this story",
        ]
        assert list(await dead.parked()) == ["a-story"]
        await asyncio.sleep(0.2)
        assert len(seen) == 3  # nothing handled twice
        # On-call sees them where the projector's are, by the group's name.
        listed = await _ops(log, url, "dlq", "list", "--json", "--group", "cms")
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(x) for x in listed.stdout.splitlines()]
        assert [(r["story"], r["error"][:10]) for r in rows] == [
            ("a-story", "ValueError"),
            ("a-story", "parked beh"),
        ]


async def test_entries_a_lost_read_left_pending_go_before_later_ones(log: Log, url: str) -> None:
    """A read whose reply is lost on a dropped connection leaves its entries pending
    here, unseen, and FastStream reads on: the next batch must not overtake them."""
    got: list[str] = []
    kit = kit_for(log, url)

    @kit.batches
    async def record(batch: Batch) -> None:
        got.extend(e.entry_id for e in batch.entries)

    app = kit.app()
    await app.start()
    try:
        await log.append([statement("a-story", "s1")])
        await until(lambda: len(got) == 1)
        stream = log.keys.log(log.keys.partition("a-story"))
        [(_, fields)] = entries_of(await log.redis.xrange(stream))
        # Two entries read as the kit's consumer in the step that adds them (before the
        # blocked reader is served), and the reply lost: the kit never sees them.
        lost_read = log.redis.register_script(
            "redis.call('XADD', KEYS[1], '*', '__data__', ARGV[1]) "
            "redis.call('XADD', KEYS[1], '*', '__data__', ARGV[1]) "
            "redis.call('XREADGROUP', 'GROUP', 'cms', ARGV[2], 'COUNT', 10, 'STREAMS', KEYS[1], '>')"
        )
        await lost_read(keys=[stream], args=[fields[b"__data__"], kit.consumer])
        await log.append([statement("a-story", "s2")])
        await until(lambda: len(got) == 4)
    finally:
        await app.stop()
    assert got == sorted(got, key=stream_id)
    assert await pending(log) == 0


async def test_a_dead_processs_pending_entries_are_handled_first(log: Log, url: str) -> None:
    await log.append([statement("a-story", f"s{n}") for n in range(1, 4)])
    stream = log.keys.log(log.keys.partition("a-story"))
    await groups.ensure_group(log.redis, stream, "cms")
    taken = await groups.read(log.redis, "cms", "killed", {stream: ">"}, 2, None)
    assert len(taken[stream]) == 2  # read by a process that died before acknowledging
    kit = kit_for(log, url)
    seen = recorded(kit)

    app = kit.app()
    await app.start()
    try:
        await until(lambda: len(seen) == 3)
        assert seen == ["a-story-s1", "a-story-s2", "a-story-s3"]
        await until(_zero(log))
    finally:
        await app.stop()


async def test_one_process_reads_a_group_and_a_standby_takes_over(log: Log, url: str) -> None:
    """One reads, one waits; both are named among the group's processes (what `dateline
    status` and the operations page call the sender and its standbys), and the one that
    stops leaves at once. The delivery service is such a group: its status says so."""
    first = kit_for(log, url, consumer="one", group=DELIVER_GROUP)
    second = kit_for(log, url, consumer="two", group=DELIVER_GROUP)
    seen: list[tuple[str, str]] = []

    @first.on()
    async def by_first(u: Update) -> None:
        seen.append(("one", u.id))

    @second.on()
    async def by_second(u: Update) -> None:
        seen.append(("two", u.id))

    app_one, app_two = first.app(), second.app()
    await app_one.start()
    standby = asyncio.create_task(app_two.start())
    try:
        await log.append([statement("a-story", "s1")])
        await until(lambda: len(seen) == 1)
        await asyncio.sleep(0.5)
        assert not standby.done()  # waiting for the lease
        found = await status.deliveries(log.redis, log.keys)
        assert (found.processes, found.standbys) == (["one"], ["two"])
        listed = (await _ops(log, url, "subscriptions", "list")).stdout
        assert "delivery service: one\nstanding by to take over: two\n" in listed, listed
        await app_one.stop()  # gives the lease back, and leaves
        assert await Leases(log.redis, log.keys.group(DELIVER_GROUP), "", 0).alive() == ["two"]
        await asyncio.wait_for(standby, 10)
        found = await status.deliveries(log.redis, log.keys)
        assert (found.processes, found.standbys) == (["two"], [])
        await log.append([statement("a-story", "s2")])
        await until(lambda: len(seen) == 2)
        assert seen == [("one", "a-story-s1"), ("two", "a-story-s2")]
    finally:
        if not standby.done():
            standby.cancel()
        await app_two.stop()


def _ops(log: Log, url: str, *args: str) -> Awaitable[subprocess.CompletedProcess[str]]:
    """`dateline ARGS` as on-call runs it, beside the app running in this process."""
    env = {
        **os.environ,
        "REDIS_URL": url,
        "DATELINE_PREFIX": log.keys.prefix,
        "DATELINE_PARTITIONS": str(log.keys.partitions),
    }
    command = [str(DATELINE), *args]
    return asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True)


@contextlib.asynccontextmanager
async def _parked_story(log: Log, url: str) -> AsyncIterator[tuple[set[str], list[str]]]:
    """A kit app running, on which a-story-s2 failed until parked, a-story-s3 behind it,
    and b-story went on; yields the ids its handler fails on, and those it handled."""
    kit = kit_for(log, url)
    failing, seen = {"a-story-s2"}, list[str]()

    @kit.on()
    async def handle(u: Update) -> None:
        if u.id in failing:
            raise ValueError(f"cannot map {u.id}")
        seen.append(u.id)

    app = kit.app()
    await app.start()
    try:
        await log.append(
            [statement("a-story", "s1"), statement("a-story", "s2"), statement("b-story", "s1")]
        )
        await log.append([statement("a-story", "s3")])
        dead = DeadLetters(log.redis, log.keys.prefix, "cms")
        await until(lambda: len(seen) == 2)
        await until(_zero(log))
        assert [x.entry_id for x in await dead.letters("a-story")] == [
            e.decode() for e in await _ids(log, "a-story", "s2", "s3")
        ]
        yield failing, seen
    finally:
        await app.stop()


async def _ids(log: Log, story: str, *refs: str) -> list[bytes]:
    """The log entries of these statements of `story`."""
    stream = log.keys.log(log.keys.partition(story))
    wanted = {f"{story}-{r}".encode() for r in refs}
    return [
        eid
        for eid, f in entries_of(await log.redis.xrange(stream))
        if any(b'"id":"' + w + b'"' in f[b"__data__"] for w in wanted)
    ]


async def test_a_redrive_handles_a_parked_story_again_in_order_and_unparks_it(
    log: Log, url: str
) -> None:
    """After the fix, on-call asks (`dateline dlq redrive STORY --group G`): the running
    app handles the story's parked updates in log order, unparks it, and says so; the
    story's next update is handled as any other."""
    async with _parked_story(log, url) as (failing, seen):
        assert sorted(seen) == ["a-story-s1", "b-story-s1"]  # partitions go side by side
        failing.clear()  # the fix
        done = await _ops(log, url, "dlq", "redrive", "a-story", "--group", "cms")
        assert done.returncode == 0, done.stderr
        assert "group cms handled its 2 parked updates" in done.stdout
        assert seen[2:] == ["a-story-s2", "a-story-s3"]
        dead = DeadLetters(log.redis, log.keys.prefix, "cms")
        assert (await dead.entries(), await dead.parked()) == ([], {})
        assert await dead.redrive_state("a-story") is None
        await log.append([statement("a-story", "s4")])
        await until(lambda: len(seen) == 5)
        assert seen[-1] == "a-story-s4"
        await until(_zero(log))
        await asyncio.sleep(0.2)
        assert len(seen) == 5  # nothing handled twice


async def test_a_redrive_that_fails_again_leaves_the_story_parked_behind_that_update(
    log: Log, url: str
) -> None:
    async with _parked_story(log, url) as (failing, seen):
        failing.clear()
        failing.add("a-story-s3")  # a fix for s2 that breaks on s3
        done = await _ops(log, url, "dlq", "redrive", "a-story", "--group", "cms")
        assert done.returncode == 1
        [s3] = await _ids(log, "a-story", "s3")
        where = f"{log.keys.partition('a-story')}:{s3.decode()}"
        assert f"stopped at {where}: ValueError('cannot map a-story-s3')" in done.stderr
        assert seen[2:] == ["a-story-s2"]  # handled, once
        dead = DeadLetters(log.redis, log.keys.prefix, "cms")
        assert [x.ref for x in await dead.letters("a-story")] == [where]
        assert await dead.parked() == {"a-story": where}
        assert await dead.redrive_state("a-story") is None  # told, and forgotten
        await log.append([statement("a-story", "s4")])  # still parked: behind s3
        await until(lambda: _letters_of(dead, "a-story", 2))
        failing.clear()
        assert await dead.ask_redrive("a-story") == 2
        await until(lambda: len(seen) == 5)
        assert seen[3:] == ["a-story-s3", "a-story-s4"]
        await until(_unasked(dead, "a-story"))
        assert (await dead.entries(), await dead.parked()) == ([], {})


async def _letters_of(dead: DeadLetters, story: str, n: int) -> bool:
    return len(await dead.letters(story)) == n


def _unasked(dead: DeadLetters, story: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await dead.redrive_state(story) is None

    return check


async def test_a_redrive_asked_while_the_app_is_down_is_served_when_it_runs(
    log: Log, url: str
) -> None:
    async with _parked_story(log, url):
        pass  # and the app stops
    waited = await _ops(log, url, "dlq", "redrive", "a-story", "--group", "cms", "--wait", "0.3")
    assert waited.returncode == 1
    assert "no app of the group took it up within 0.3 s. It stays asked" in waited.stderr
    listed = await _ops(log, url, "dlq", "list", "--group", "cms")
    assert "redrive of a-story: asked, not served yet" in listed.stderr
    # What on-call is told for stories and groups this cannot serve.
    none = await _ops(log, url, "dlq", "redrive", "b-story", "--group", "cms")
    assert "story 'b-story' has no parked updates in group 'cms'" in none.stderr
    old = await _ops(log, url, "dlq", "redrive", "a-story", "--group", "projector-v9")
    assert "projector-v9 is not the active projection's group (projector-v1)" in old.stderr

    restarted = kit_for(log, url)
    again = recorded(restarted)

    app = restarted.app()
    await app.start()
    try:
        await until(lambda: again == ["a-story-s2", "a-story-s3"])
        dead = DeadLetters(log.redis, log.keys.prefix, "cms")
        await until(_unasked(dead, "a-story"))
        assert await dead.parked() == {}
    finally:
        await app.stop()


async def test_discarding_a_story_drops_its_redrive_request_too(log: Log, url: str) -> None:
    async with _parked_story(log, url):
        pass
    dead = DeadLetters(log.redis, log.keys.prefix, "cms")
    assert await dead.ask_redrive("a-story") == 2
    dropped = await _ops(log, url, "dlq", "discard", "a-story", "--group", "cms", "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert (await dead.entries(), await dead.parked()) == ([], {})
    assert await dead.redrive_state("a-story") is None  # no app will meet a stale request


@pytest.fixture(scope="module")
def handlers_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of a kit app's own, where its handler writes (as the delivery service's
    fan-out writes an outbox, on a cluster another node than the dead letters')."""
    server = start_server(VALKEY, tmp_path_factory.mktemp("handlers"))
    try:
        yield server.url
    finally:
        server.stop()


async def refusing(stores: list[aioredis.Redis], refusal: str) -> Callable[[], Awaitable[object]]:
    """Make the handler's store (`stores[-1]`) refuse its default user's SET as `refusal`
    says, or be out of reach (`UNREACHABLE`: a client of a port where nobody listens
    takes its place); returns what undoes it."""
    store = stores[-1]
    if refusal == "UNREACHABLE":
        stores.append(aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0"))

        async def back() -> None:
            if stores[-1] is not store:
                await stores.pop().aclose()

        return back
    if refusal == "NOPERM":  # an ACL without the command
        await store.acl_setuser("default", enabled=True, commands=["-set"])
        return lambda: store.acl_setuser("default", enabled=True, commands=["+set"])
    setting, value = {"OOM": ("maxmemory", "1"), "NOREPLICAS": ("min-replicas-to-write", "1")}[
        refusal
    ]
    was = cast(str, (await store.config_get(setting))[setting])  # values come as text
    await store.config_set(setting, value)
    return lambda: store.config_set(setting, was)


@pytest.mark.parametrize("refusal", ["OOM", "NOREPLICAS", "NOPERM", "UNREACHABLE"])
async def test_a_store_refusing_writes_or_out_of_reach_parks_nothing_and_is_caught_up_after(
    log: Log, url: str, handlers_store: str, refusal: str
) -> None:
    """The handler's store refuses every write for a while (out of memory, short of
    replicas, or an ACL without the command) or cannot be reached (down, a node failing
    over): the server's state, not the update's fault. The app retries in order, many
    times past `max_attempts`, parks nothing, says so in one warning a try without a
    traceback, and handles the update once the store takes writes again."""
    stores = [aioredis.Redis.from_url(handlers_store)]
    kit = kit_for(log, url)  # max_attempts=3
    tries: list[str] = []
    seen: list[str] = []

    @kit.on()
    async def handle(u: Update) -> None:
        tries.append(u.id)
        await stores[-1].set(f"{log.keys.prefix}:{u.id}", u.subject)
        seen.append(u.id)

    undo = await refusing(stores, refusal)
    app = kit.app()
    await app.start()
    try:
        with capture_logs() as logs:
            await log.append([statement("a-story", "s1"), statement("a-story", "s2")])
            await until(lambda: len(tries) >= 4 * 3)
        assert seen == []
        dead = DeadLetters(log.redis, log.keys.prefix, "cms")
        assert (await dead.entries(), await dead.parked()) == ([], {})
        if refusal == "UNREACHABLE":
            said = [x for x in logs if x["event"].startswith("Redis unreachable; retrying")]
            assert said and all("ConnectionError" in x["error"] for x in said), logs
        else:
            said = [x for x in logs if x["event"].startswith("a server refuses")]
            assert said and all(x["refusal"] == refusal for x in said), logs
        assert all("exc_info" not in x for x in said), said
        assert not [x for x in logs if x["event"].startswith(("handler failed", "update parked"))]
        await undo()  # ops made room, mended the ACL, or the store is back
        await until(lambda: len(seen) == 2)
        assert seen == ["a-story-s1", "a-story-s2"]  # in order, each once
        await until(_zero(log))
        assert (await dead.entries(), await dead.parked()) == ([], {})
    finally:
        await undo()
        await app.stop()
        for store in stores:
            await store.aclose()


@pytest.mark.one_server(
    "a user's password is each node's own on a cluster: the same case, node by node"
)
async def test_a_password_rotated_under_a_running_app_is_said_so_not_called_unreachable(
    log: Log, url: str
) -> None:
    """redis-py's AuthenticationError is a ConnectionError: the app waits it out as it
    would an outage (ops put the password back, or restart it with the new one), and
    its log says what it is waiting for."""
    user, secret = f"kit-{os.getpid()}-{time.monotonic_ns()}", "first-secret"
    await log.redis.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{secret}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all"],
    )
    parts = urlsplit(url)
    own = urlunsplit(parts._replace(netloc=f"{user}:{secret}@{parts.hostname}:{parts.port}"))
    kit = kit_for(log, own)
    seen = recorded(kit)

    app = kit.app()
    await app.start()
    try:
        await log.append([statement("a-story", "s1")])
        await until(lambda: seen == ["a-story-s1"])
        with capture_logs() as logs:
            await log.redis.acl_setuser(
                user, enabled=True, reset_passwords=True, passwords=["+rotated"]
            )
            await log.redis.client_kill_filter(user=user)
            await until(lambda: any(x["event"].startswith("Redis refused the") for x in logs))
            await log.redis.acl_setuser(user, enabled=True, passwords=[f"+{secret}"])
            await log.append([statement("a-story", "s2")])
            await until(lambda: seen == ["a-story-s1", "a-story-s2"])
        said = [x for x in logs if x["event"].startswith("Redis refused the credentials")]
        assert "AuthenticationError" in said[0]["error"], said
        assert not [x for x in logs if "unreachable" in x["event"]], logs
    finally:
        await app.stop()
        await log.redis.acl_deluser(user)
