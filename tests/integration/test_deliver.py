"""The delivery service on a real server and a real HTTP receiver (in this process):
fan-out, order per story, retries, dead letters, redrive, pause, and the SSRF guard."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvicorn
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from prometheus_client import REGISTRY
from redis.exceptions import TimeoutError as RedisTimeoutError
from standardwebhooks import Webhook
from structlog.testing import capture_logs

from dateline.cli import migrate_cmd
from dateline.cli.migrate_cmd import _deliveries_held
from dateline.deliver.app import DeliveryService, create_app
from dateline.deliver.fanout import Fanout
from dateline.deliver.webhook import Headers
from dateline.deliver.worker import Outcome, RetryPolicy, Sender, Worker
from dateline.kit import Batch, LogEntry
from dateline.runtime import groups, status
from dateline.store import migrate
from dateline.store.config import Settings
from dateline.store.deadletters import DeadLetters, Delivery, Parking
from dateline.store.layout import DELIVER_GROUP, deliveries_held_key
from dateline.store.log import Log
from dateline.store.subscriptions import (
    Fields,
    OutboxNotReplicated,
    RetryState,
    Subscription,
    Subscriptions,
)
from tests.e2e.processes import free_port
from tests.factories import encode, update
from tests.integration.test_kit import _ops, statement, until

pytestmark = pytest.mark.cluster_too  # each server, and the local cluster


class Receiver:
    """An HTTP receiver that answers `status` and records what it got."""

    def __init__(self) -> None:
        self.status = 204
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status = self.status
        if status < 300:
            self.got.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"no" if status >= 300 else b""})

    def ids(self) -> list[str]:
        return [h["ce-id"] if "ce-id" in h else msgspec.json.decode(b)["id"] for h, b in self.got]


@contextlib.asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    server = uvicorn.Server(
        uvicorn.Config(receiver, host="127.0.0.1", port=receiver.port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def delivering(
    log: Log, url: str, policy: RetryPolicy, **kit: float
) -> AsyncIterator[DeliveryService]:
    """The service; `kit`: its kit's settings (`retry_s`, `max_attempts`)."""
    cfg = Settings(None, Path("."), log.keys.prefix, log.keys.partitions, lease_ttl_ms=1000)
    service = create_app(cfg, url, cluster=log.cluster, policy=policy, consumer="test")
    for name, value in kit.items():
        setattr(service.kit, name, value)
    assert service.app is not None
    await service.app.start()
    try:
        yield service
    finally:
        await service.app.stop()


FAST = RetryPolicy(first_s=0.02, max_backoff_s=0.05, give_up_after_s=60, timeout_s=2)


async def test_every_wanted_update_arrives_signed_in_order_per_story(log: Log, url: str) -> None:
    subs = Subscriptions(log.redis, log.keys)
    await log.append([statement("before-it", "s0")])  # before the subscription: not sent
    async with receiving() as receiver, receiving() as binary:
        _, whole = await subs.add(receiver.url, name="whole", allow_private=True)
        _, only = await subs.add(
            binary.url,
            name="only-hanoi",
            story_prefixes=["hanoi-"],
            types=["dateline.statement.made"],
            mode="binary",
            allow_private=True,
        )
        async with delivering(log, url, FAST):
            await log.append([statement("hanoi-a", f"s{n}") for n in range(1, 4)])
            await log.append([encode(update(subject="hanoi-a", id="opened"))])
            await log.append([statement("cohen-b", f"s{n}") for n in range(1, 3)])
            await until(lambda: len(receiver.got) == 6 and len(binary.got) == 3)
    ids = receiver.ids()
    assert [i for i in ids if i.startswith("hanoi-a")] == ["hanoi-a-s1", "hanoi-a-s2", "hanoi-a-s3"]
    assert sorted(ids) == sorted(
        ["hanoi-a-s1", "hanoi-a-s2", "hanoi-a-s3", "opened", "cohen-b-s1", "cohen-b-s2"]
    )
    assert binary.ids() == ["hanoi-a-s1", "hanoi-a-s2", "hanoi-a-s3"]
    for target, secret in ((receiver, whole), (binary, only)):
        for headers, body in target.got:
            Webhook(secret).verify(body, headers, json_parse=False)
            # The CloudEvents SDK reads what dateline sends, in both modes.
            event = from_http(HTTPMessage(headers, body), JSONFormat())
            assert event.get_type().startswith("dateline.")
            assert event.get_extension("position")
    assert all(
        h["content-type"].startswith("application/cloudevents+json") for h, _ in receiver.got
    )
    assert all(h["content-type"] == "application/json" for h, _ in binary.got)
    # No compressed answer asked for: an error's body goes to the log as it comes.
    assert not any("accept-encoding" in h for h, _ in receiver.got + binary.got)
    state = await status.deliveries(log.redis, log.keys)
    assert {s.name: (s.backlog, s.delivered) for s in state.subscriptions} == {
        "whole": (0, 6),
        "only-hanoi": (0, 3),
    }


async def test_failures_retry_then_park_and_a_redrive_delivers_in_order(log: Log, url: str) -> None:
    subs = Subscriptions(log.redis, log.keys)
    policy = RetryPolicy(first_s=0.02, max_backoff_s=0.05, give_up_after_s=0.4, timeout_s=1)
    async with receiving() as receiver:
        receiver.status = 503
        await subs.add(receiver.url, name="flaky", allow_private=True)
        async with delivering(log, url, policy):
            await log.append([statement("a-story", f"s{n}") for n in range(1, 4)])
            await until(lambda: _parked(subs, "flaky", 3))
            stats = await subs.stats("flaky")
            assert int(stats["failed_attempts"]) >= 3  # retried before it gave up
            assert stats["last_error"] == "HTTP 503: no"
            letters = await subs.dead_letters("flaky")
            assert [p.error for _, p in letters] == [
                "HTTP 503: no",
                "parked behind an earlier update of this story",
                "parked behind an earlier update of this story",
            ]
            # Held: a later update of the story parks behind, the receiver still down or not.
            receiver.status = 204
            await log.append([statement("a-story", "s4")])
            await until(lambda: _parked(subs, "flaky", 4))
            assert receiver.got == []
            await subs.request_redrive("flaky")
            await until(lambda: len(receiver.got) == 4)
            await log.append([statement("a-story", "s5")])
            await until(lambda: len(receiver.got) == 5)
    assert receiver.ids() == [f"a-story-s{n}" for n in range(1, 6)]
    assert await subs.dead_letters("flaky") == []
    assert await subs.parked_stories("flaky") == set()


async def test_the_retry_schedule_survives_a_restart(log: Log, url: str) -> None:
    subs = Subscriptions(log.redis, log.keys)
    policy = RetryPolicy(first_s=0.05, max_backoff_s=0.1, give_up_after_s=3600, timeout_s=1)
    async with receiving() as receiver:
        receiver.status = 500
        await subs.add(receiver.url, name="down", allow_private=True)
        async with delivering(log, url, policy):
            await log.append([statement("a-story", "s1")])
            await until(lambda: _attempts(subs, "down", 3))
        [(entry, _)] = await subs.window("down", 10)
        before = (await subs.retries("down", [entry]))[entry]
        async with delivering(log, url, policy):  # a new process, the same schedule
            await until(lambda: _attempts(subs, "down", before.attempts + 2))
            after = (await subs.retries("down", [entry]))[entry]
            assert after.first_failed == before.first_failed  # counts on from the first
            receiver.status = 204
            await until(lambda: len(receiver.got) == 1)
    assert receiver.ids() == ["a-story-s1"]


async def _attempts(subs: Subscriptions, name: str, n: int) -> bool:
    found = await subs.retries(name, [e for e, _ in await subs.window(name, 10)])
    return any(state.attempts >= n for state in found.values())


async def _parked(subs: Subscriptions, name: str, n: int) -> bool:
    return len(await subs.dead_letters(name)) == n


async def test_a_paused_subscription_queues_and_resume_sends_what_waited(
    log: Log, url: str
) -> None:
    subs = Subscriptions(log.redis, log.keys)
    async with receiving() as receiver:
        await subs.add(receiver.url, name="later", allow_private=True)
        await subs.set_paused("later", True)
        # No service: said, for its states would read as if one sent.
        assert (await status.deliveries(log.redis, log.keys)).processes == []
        alone = (await _ops(log, url, "subscriptions", "list")).stdout
        assert "no delivery service running: nothing is sent until `dateline deliver`" in alone
        said = (await _ops(log, url, "status")).stdout
        assert "NO delivery service running (`dateline deliver`): nothing is sent" in said
        async with delivering(log, url, FAST):

            async def heard() -> bool:  # its first heartbeat, once its runner has begun
                return bool((await status.deliveries(log.redis, log.keys)).processes)

            await until(heard)
            running = await status.deliveries(log.redis, log.keys)
            assert len(running.processes) == 1, running
            listed = (await _ops(log, url, "subscriptions", "list")).stdout
            assert f"delivery service: {running.processes[0]}" in listed
            assert "no delivery service" not in listed
            said = (await _ops(log, url, "status")).stdout
            assert f"; sent by {running.processes[0]}" in said, said
            await log.append([statement("a-story", f"s{n}") for n in range(1, 3)])
            await until(lambda: _backlog(log, "later", 2))
            await asyncio.sleep(0.3)
            assert receiver.got == []
            await subs.set_paused("later", False)
            await until(lambda: len(receiver.got) == 2)


async def test_sends_are_held_while_the_log_is_moved_and_after(log: Log, url: str) -> None:
    """`dateline migrate` copies what each receiver had not acknowledged to the target's
    outboxes: a send from here during or after the move would reach it twice (or again
    after a restore of a later backup there). A freeze called off lets them go."""
    subs = Subscriptions(log.redis, log.keys)
    async with receiving() as receiver:
        await subs.add(receiver.url, name="cms", allow_private=True)
        await subs.set_paused("cms", True)
        async with delivering(log, url, FAST) as service:
            await log.append([statement("a-story", f"s{n}") for n in range(1, 4)])
            await until(lambda: _backlog(log, "cms", 3))
            with capture_logs() as logs:
                await migrate.freeze(log.redis, log.keys, "moving", "redis://elsewhere:6379")
                await until(lambda: service.moving is not None)
            assert any("deliveries held" in e["event"] for e in logs), logs
            await subs.set_paused("cms", False)
            await asyncio.sleep(2.5)  # a worker's round or two, a follower's read or two
            assert receiver.got == []
            assert await _backlog(log, "cms", 3)
            said = await status.deliveries(log.redis, log.keys)  # what list and the ops page say
            assert said.moving_to == "redis://elsewhere:6379"
            listed = (await _ops(log, url, "subscriptions", "list")).stdout
            assert "every send HELD: the log is being moved to redis://elsewhere:6379" in listed
            assert "\tHELD (move)\t" in listed
            await migrate.release(log.redis, log.keys)
            await until(lambda: len(receiver.got) == 3)
            assert service.moving is None
            assert (await status.deliveries(log.redis, log.keys)).moving_to is None


class _Gated(Sender):
    """A receiver that answers each POST once `gate` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.gate = asyncio.Event(), asyncio.Event()

    async def post(self, sub: Subscription, headers: Headers, body: bytes, _: float) -> Outcome:
        self.started.set()
        await self.gate.wait()
        return Outcome(204, "")


async def test_the_move_reads_what_is_owed_once_the_sends_under_way_have_ended(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send under way at the freeze ends, and is acknowledged, before the service says
    it holds; `dateline migrate` waits for that word, so what it reads as owed is what
    no receiver got. Without a delivery service running it waits for nothing."""
    target = "redis://elsewhere:6379"
    held_key = deliveries_held_key(log.keys.prefix)
    assert await _deliveries_held(log, target)  # none runs: at once
    subs = Subscriptions(log.redis, log.keys)
    await subs.add("https://example.org/", name="cms")
    cfg = Settings(None, Path("."), log.keys.prefix, log.keys.partitions, lease_ttl_ms=1000)
    service = create_app(cfg, url, cluster=log.cluster, policy=FAST, consumer="test")
    sender = service.sender = _Gated()
    assert service.app is not None
    await service.app.start()
    try:
        await log.append([statement("a-story", "s1")])
        await asyncio.wait_for(sender.started.wait(), 15)
        await migrate.freeze(log.redis, log.keys, "moving", target)
        await until(lambda: service.moving is not None)
        await asyncio.sleep(1.5)  # a look or two of the follower: the send is still out
        assert await log.redis.get(held_key) is None
        waiting = asyncio.create_task(_deliveries_held(log, target))
        await asyncio.sleep(0.5)
        # It waits while the send is out. (Stop 86 looked for the service by the group's
        # heartbeats, which a kit's group has none of: it waited for nothing.)
        assert not waiting.done()
        sender.gate.set()
        assert await asyncio.wait_for(waiting, 10)
        assert await subs.window("cms", 10) == []  # acknowledged before the word
    finally:
        sender.gate.set()  # a failed check must not leave the stop waiting on the send
        await service.app.stop()
    # A service that never says it: the move goes on after its wait, and says so.
    monkeypatch.setattr(migrate_cmd, "HOLD_WAIT_S", 0.3)
    await log.redis.delete(held_key)
    await log.redis.set(log.keys.group(DELIVER_GROUP).lease("all"), "stuck", px=60_000)
    assert not await _deliveries_held(log, target)


async def _backlog(log: Log, name: str, n: int) -> bool:
    found = await status.deliveries(log.redis, log.keys)
    return [s.backlog for s in found.subscriptions if s.name == name] == [n]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_the_guard_refuses_loopback_when_it_connects(log: Log, url: str, host: str) -> None:
    """A subscription that got past the check when it was added (its name resolved to a
    public address then) is still refused at connection time: an address in the URL,
    which the HTTP client never looks up, and a name, which it does."""
    subs = Subscriptions(log.redis, log.keys)
    async with receiving() as receiver:
        target = receiver.url.replace("127.0.0.1", host)
        await subs.add(target, name="sneaky")  # the registry itself does not resolve
        async with delivering(log, url, FAST):
            await log.append([statement("a-story", "s1")])
            await until(lambda: _has_error(subs, "sneaky"))
        assert receiver.got == []
    error = (await subs.stats("sneaky"))["last_error"]
    assert "loopback" in error and ("127.0.0.1" in error or "::1" in error), error


async def _has_error(subs: Subscriptions, name: str) -> bool:
    return "last_error" in await subs.stats(name)


async def test_removing_a_subscription_drops_its_state(log: Log, url: str) -> None:
    subs = Subscriptions(log.redis, log.keys)
    await subs.add("https://example.org/x", name="gone")
    await log.append([statement("a-story", "s1")])
    sub = await subs.get("gone")
    assert isinstance(sub, Subscription)
    await log.redis.xadd(subs.state("gone").outbox, {"story": "a-story"})
    assert await subs.remove("gone")
    assert await subs.get("gone") is None
    assert not await log.redis.exists(*subs.state("gone").all())
    assert await subs.secret("gone") is None
    assert not await subs.remove("gone")


async def test_names_prefixes_and_types_are_checked(log: Log) -> None:
    subs = Subscriptions(log.redis, log.keys)
    with pytest.raises(ValueError, match="subscription name"):
        await subs.add("https://example.org/", name="Not OK")
    with pytest.raises(ValueError, match="story prefix"):
        await subs.add("https://example.org/", story_prefixes=[""])
    with pytest.raises(ValueError, match="no update type"):
        await subs.add("https://example.org/", types=["dateline.nope"], known_types=["a.b"])
    first, secret = await subs.add("https://example.org/", name="one")
    assert secret.startswith("whsec_")
    assert secret not in msgspec.json.encode(first).decode()  # settings apart from the secret
    assert await subs.secret("one") == secret
    with pytest.raises(ValueError, match="exists already"):
        await subs.add("https://example.org/", name="one")


async def _batch(log: Log, story: str, group: str = "fan") -> Batch:
    """The story's partition's entries, read through a group, as the kit hands them on."""
    partition = log.keys.partition(story)
    stream = log.keys.log(partition)
    await groups.ensure_group(log.redis, stream, group)
    got = await groups.read(log.redis, group, "test", {stream: ">"}, 100, None)
    entries = [LogEntry(partition, eid, f[b"__data__"]) for eid, f in got[stream]]
    return Batch(partition, stream, group, entries)


async def test_a_batch_fanned_out_again_adds_nothing_twice(log: Log) -> None:
    """The outbox entries and the log's acknowledgement are two steps (other slots on a
    cluster): a batch handled again after a crash between them, and one that repeats
    the first half of another, add each update once, in order."""
    subs = Subscriptions(log.redis, log.keys)
    await subs.add("https://example.org/all", name="all")
    await subs.add("https://example.org/b", name="only-b", story_prefixes=["b-"])
    await log.append([statement("a-story", f"s{n}") for n in range(1, 5)])
    batch = await _batch(log, "a-story")
    fanout = Fanout(lambda: subs)
    head = Batch(batch.partition, batch.stream, batch.group, batch.entries[:2])
    await fanout(head)
    await fanout(batch)  # the first two again, with the rest: the crash came before the ack
    await fanout(batch)
    outbox = await subs.window("all", 100)
    assert [f[b"position"].decode() for _, f in outbox] == [e.position for e in batch.entries]
    assert await subs.window("only-b", 100) == []  # wanted nothing: no outbox, no mark


async def test_a_fan_out_under_way_gives_a_removed_subscription_nothing(log: Log) -> None:
    """A fan-out that read the registry before a removal does not make the removed
    subscription's outbox anew; one added again under the same name gets what follows."""
    subs = Subscriptions(log.redis, log.keys)
    await subs.add("https://example.org/x", name="gone")
    read_before = await subs.all()
    assert await subs.remove("gone")
    await log.append([statement("a-story", "s1")])
    batch = await _batch(log, "a-story")
    stale = Subscriptions(log.redis, log.keys)
    stale.all = lambda: _returns(read_before)  # type: ignore[method-assign]
    await Fanout(lambda: stale)(batch)
    assert not await log.redis.exists(*subs.state("gone").all())
    await subs.add("https://example.org/x", name="gone")
    await log.append([statement("a-story", "s2")])
    await Fanout(lambda: subs)(await _batch(log, "a-story"))
    assert [f[b"story"] for _, f in await subs.window("gone", 10)] == [b"a-story"]


def _beside(log: Log, story: str) -> str:
    """Another story of `story`'s partition."""
    return next(
        other
        for n in range(1000)
        if log.keys.partition(other := f"b-story-{n}") == log.keys.partition(story)
    )


def _positions(outbox: list[tuple[str, Fields]]) -> list[str]:
    return [f[b"position"].decode() for _, f in outbox]


async def test_parked_updates_are_redriven_once_to_the_outboxes_that_lacked_them(
    log: Log,
) -> None:
    """While a story's updates are parked, later updates of other stories go out and
    move the marks past them: what each outbox lacks is noted before they are parked,
    and a redrive adds exactly that, once, however often it is served."""
    subs = Subscriptions(log.redis, log.keys)
    for name in ("steady", "flaky"):
        await subs.add("https://example.org/", name=name)
    other = _beside(log, "a-story")
    await log.append([statement("a-story", "s1"), statement(other, "s1")])
    batch = await _batch(log, "a-story")
    a1, b1 = batch.entries
    broken = Subscriptions(log.redis, log.keys)
    to_outbox = broken.to_outbox

    async def failing(sub: Subscription, *args: Any, **kw: Any) -> int:
        if sub.name == "flaky":
            raise RuntimeError("flaky's outbox is broken")
        return await to_outbox(sub, *args, **kw)

    broken.to_outbox = failing  # type: ignore[method-assign]
    fanout = Fanout(lambda: broken)
    with pytest.raises(RuntimeError, match="broken"):
        await fanout(batch)  # steady took both; flaky neither
    one = Batch(batch.partition, batch.stream, batch.group, [a1])
    await fanout.parking(one)  # as the kit parks a1
    await Fanout(lambda: subs)(Batch(batch.partition, batch.stream, batch.group, [b1]))
    await log.append([statement("a-story", "s2")])
    [a2] = (await _batch(log, "a-story")).entries
    await fanout.parking(Batch(batch.partition, batch.stream, batch.group, [a2]))  # behind a1
    assert await subs.held("flaky") == [a1.position, a2.position]
    assert await subs.held("steady") == [a2.position]  # it had a1 from the failed batch
    redrive = Batch(batch.partition, batch.stream, batch.group, [a1, a2], redrive=True)
    await Fanout(lambda: subs)(redrive)
    await Fanout(lambda: subs)(redrive)  # served again: a crash before the letters went
    assert _positions(await subs.window("steady", 10)) == [a1.position, b1.position, a2.position]
    assert _positions(await subs.window("flaky", 10)) == [b1.position, a1.position, a2.position]
    assert (await subs.held("steady"), await subs.held("flaky")) == ([], [])


async def test_a_failed_fan_out_raises_once_every_outbox_write_has_landed(log: Log) -> None:
    """One subscription's outbox fails at once while another's is still being written:
    the kit hears of the failure only after that write landed, so the parking that
    follows finds the update there and notes it missed by the broken one alone (a
    redrive sends it once). A CI run once saw both noted: the write landed after."""
    subs = Subscriptions(log.redis, log.keys)
    for name in ("steady", "flaky"):
        await subs.add("https://example.org/", name=name)
    await log.append([statement("a-story", "s1")])
    batch = await _batch(log, "a-story")
    broken = Subscriptions(log.redis, log.keys)
    to_outbox = broken.to_outbox

    async def failing(sub: Subscription, *args: Any, **kw: Any) -> int:
        if sub.name == "flaky":
            raise RuntimeError("flaky's outbox is broken")
        await asyncio.sleep(0.2)  # a slow node, a replica's WAIT
        return await to_outbox(sub, *args, **kw)

    broken.to_outbox = failing  # type: ignore[method-assign]
    fanout = Fanout(lambda: broken)
    with pytest.raises(RuntimeError, match="broken"):
        await fanout(batch)
    assert _positions(await subs.window("steady", 10)) == [batch.entries[0].position]
    await fanout.parking(batch)
    assert (await subs.held("steady"), await subs.held("flaky")) == (
        [],
        [batch.entries[0].position],
    )


async def test_a_worker_that_fails_as_the_service_stops_is_said(log: Log, url: str) -> None:
    """A worker's error as the service stops, after the follower last looked, is logged
    as it is collected, not dropped."""

    with capture_logs() as logs:
        async with delivering(log, url, FAST) as service:

            async def failing() -> None:
                await service.stop_event.wait()
                raise RuntimeError("the worker's round broke")

            service.workers["desk"] = asyncio.create_task(failing())
    said = [(e["event"], e.get("subscription"), e.get("error")) for e in logs]
    assert said[-1] == ("worker failed", "desk", 'RuntimeError("the worker\'s round broke")')


class _SlowOrFailing(Sender):
    """A receiver that fails `failing`'s updates at once and takes its time over others."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing, self.got = failing, list[str]()

    async def post(self, sub: Subscription, headers: Headers, body: bytes, _: float) -> Outcome:
        story = msgspec.json.decode(body)["subject"]
        if story == self.failing:
            return Outcome(500, "HTTP 500")
        await asyncio.sleep(0.2)
        self.got.append(story)
        return Outcome(204, "")


async def test_a_round_that_fails_raises_once_its_other_stories_settled(log: Log) -> None:
    """A story whose retry state cannot be written fails the round; the other story's
    delivery, under way, is finished and acknowledged first, so the round tried again
    does not send it a second time beside the first."""
    subs = Subscriptions(log.redis, log.keys)
    await subs.add("https://example.org/", name="desk")
    other = _beside(log, "a-story")
    await log.append([statement("a-story", "s1"), statement(other, "s1")])
    batch = await _batch(log, "a-story")
    await Fanout(lambda: subs)(batch)
    broken = Subscriptions(log.redis, log.keys)

    async def failed(name: str, entry: str, state: RetryState) -> None:
        raise RuntimeError("the retry state cannot be written")

    broken.failed = failed  # type: ignore[method-assign]
    sender = _SlowOrFailing("a-story")
    with pytest.raises(RuntimeError, match="retry state"):
        await Worker(broken, "desk", sender, FAST).run(asyncio.Event())
    assert sender.got == [other]
    assert _positions(await subs.window("desk", 10)) == [batch.entries[0].position]


class _Counting(Sender):
    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    async def post(self, sub: Subscription, headers: Headers, body: bytes, _: float) -> Outcome:
        self.sent += 1
        return Outcome(204, "")


async def test_a_freeze_heard_mid_round_stops_the_next_send(log: Log) -> None:
    """A round sends a story's updates one by one: a move heard after the first, the
    rest wait in the outbox, to be copied there."""
    subs = Subscriptions(log.redis, log.keys)
    await subs.add("https://example.org/", name="desk")
    await log.append([statement("a-story", f"s{n}") for n in range(1, 4)])
    await Fanout(lambda: subs)(await _batch(log, "a-story"))
    sender = _Counting()
    worker = Worker(subs, "desk", sender, FAST, moving=lambda: "elsewhere" if sender.sent else None)
    sub, secret = await subs.get("desk"), await subs.secret("desk")
    assert sub is not None and secret is not None
    worker._sign_with(secret)
    await worker.round(sub)
    assert sender.sent == 1
    wait_s, _ = await worker.round(sub)  # no progress: a wait, and no send
    assert wait_s > 0.5
    assert sender.sent == 1
    assert len(await subs.window("desk", 10)) == 2


async def test_discarding_the_fan_outs_parked_updates_forgets_who_missed_them(
    log: Log, url: str
) -> None:
    """`dateline dlq discard STORY --group deliver`: nobody is owed them any more, so no
    subscription goes on saying it missed them; another story's notes stay."""
    subs = Subscriptions(log.redis, log.keys)
    await subs.add("https://example.org/", name="desk")
    other = _beside(log, "a-story")
    await log.append([statement("a-story", "s1"), statement(other, "s1")])
    batch = await _batch(log, "a-story", DELIVER_GROUP)
    await Fanout(lambda: subs).parking(batch)  # both parked, as the kit would
    dead = DeadLetters(log.redis, log.keys.prefix, DELIVER_GROUP)
    await dead.park(
        [
            Parking(Delivery(e.partition, batch.stream, e.entry_id, story, e.raw), "bug", "")
            for e, story in zip(batch.entries, ["a-story", other], strict=True)
        ]
    )
    assert len(await subs.held("desk")) == 2
    done = await _ops(log, url, "dlq", "discard", "a-story", "--group", DELIVER_GROUP, "--yes")
    assert done.returncode == 0, done.stderr
    assert "a-story: dropped 1 parked updates" in done.stdout
    assert await subs.held("desk") == [batch.entries[1].position]
    assert [x.story for x in await dead.letters(other)] == [other]


async def test_the_delivery_service_redrives_its_parked_fan_out_after_the_fix(
    log: Log, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dateline dlq redrive STORY --group deliver`, as on-call runs it: the story's
    parked updates reach the subscriber that missed them, in the story's order, once."""
    subs = Subscriptions(log.redis, log.keys)
    broken = {True}
    to_outbox = Subscriptions.to_outbox

    async def failing(
        self: Subscriptions, sub: Subscription, partition: int, entries: Any, **kw: Any
    ) -> int:
        if sub.name == "flaky" and broken and any(f[b"story"] == b"a-story" for _, f in entries):
            raise RuntimeError("flaky's outbox is broken for a-story")
        return await to_outbox(self, sub, partition, entries, **kw)

    monkeypatch.setattr(Subscriptions, "to_outbox", failing)
    other = _beside(log, "a-story")
    dead = DeadLetters(log.redis, log.keys.prefix, DELIVER_GROUP)
    async with receiving() as steady, receiving() as flaky:
        await subs.add(steady.url, name="steady", allow_private=True)
        await subs.add(flaky.url, name="flaky", allow_private=True)
        async with delivering(log, url, FAST, retry_s=0.05, max_attempts=2):
            await log.append([statement("a-story", "s1")])
            await until(lambda: len(steady.got) == 1)
            await until(lambda: _parked_in(dead, "a-story"))
            await log.append([statement("a-story", "s2"), statement(other, "s1")])
            await until(lambda: len(steady.got) == 2 and len(flaky.got) == 1)
            await until(lambda: _letters(dead, "a-story", 2))  # s2 behind s1
            found = await status.deliveries(log.redis, log.keys)
            assert {x.name: x.held for x in found.subscriptions} == {"flaky": 2, "steady": 1}
            assert found.fanout_parked == 2
            status.record_deliveries(found)  # what the query's /metrics says, for alerts
            assert REGISTRY.get_sample_value("dateline_fanout_parked_updates") == 2
            missed = {
                name: REGISTRY.get_sample_value(
                    "dateline_delivery_missed_updates", {"subscription": name}
                )
                for name in ("flaky", "steady")
            }
            assert missed == {"flaky": 2, "steady": 1}
            told = await _ops(log, url, "status")
            assert "parked in the fan-out 2 (`dateline dlq list --group deliver`)" in told.stdout
            listed = await _ops(log, url, "subscriptions", "list")
            assert "missed 2: parked in the fan-out before they reached it" in listed.stdout
            assert "missed 1: parked in the fan-out" in listed.stdout
            broken.clear()  # the fix
            done = await _ops(log, url, "dlq", "redrive", "a-story", "--group", DELIVER_GROUP)
            assert done.returncode == 0, done.stderr
            assert "group deliver handled its 2 parked updates" in done.stdout
            await until(lambda: len(flaky.got) == 3 and len(steady.got) == 3)
            await log.append([statement("a-story", "s3")])
            await until(lambda: len(flaky.got) == 4 and len(steady.got) == 4)
            await asyncio.sleep(0.3)
    assert steady.ids() == ["a-story-s1", f"{other}-s1", "a-story-s2", "a-story-s3"]
    assert flaky.ids() == [f"{other}-s1", "a-story-s1", "a-story-s2", "a-story-s3"]
    assert (await dead.entries(), await dead.parked()) == ([], {})
    assert (await subs.held("steady"), await subs.held("flaky")) == ([], [])
    found = await status.deliveries(log.redis, log.keys)
    assert ([x.held for x in found.subscriptions], found.fanout_parked) == ([0, 0], 0)


async def _letters(dead: DeadLetters, story: str, n: int) -> bool:
    return len(await dead.letters(story)) == n


async def _parked_in(dead: DeadLetters, story: str) -> bool:
    return story in await dead.parked()


async def _returns(subs: list[Subscription]) -> list[Subscription]:
    return subs


async def test_on_a_cluster_the_batch_waits_for_the_outboxs_replica(cluster_log: Log) -> None:
    """The log's acknowledgement is another node's: the outbox entries must be on the
    subscription's replica first. Fewer replicas than asked within the timeout is an
    outage the kit waits out (a redis TimeoutError), and the batch again adds nothing."""
    log = cluster_log
    subs = Subscriptions(log.redis, log.keys)
    await subs.add("https://example.org/x", name="desk")
    await log.append([statement("a-story", f"s{n}") for n in range(1, 4)])
    batch = await _batch(log, "a-story")
    await Fanout(lambda: subs, _replicas(1))(batch)  # each master has one
    assert len(await subs.window("desk", 10)) == 3
    await log.append([statement("a-story", "s4")])
    more = await _batch(log, "a-story")
    with pytest.raises(OutboxNotReplicated, match="1 of 2 replicas") as raised:
        await Fanout(lambda: subs, _replicas(2), replica_timeout_ms=50)(more)
    assert isinstance(raised.value, RedisTimeoutError)
    await Fanout(lambda: subs, _replicas(1))(more)
    assert len(await subs.window("desk", 10)) == 4


def _replicas(n: int) -> Callable[[], Awaitable[int]]:
    async def wanted() -> int:
        return n

    return wanted
