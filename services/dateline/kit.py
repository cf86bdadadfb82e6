"""A FastStream app on dateline's log, for newsroom developers: typed handlers in a few lines.

    from dateline.kit import DatelineLog
    from dateline_schemas.schedule import ScheduleRescheduled

    log = DatelineLog("redis://localhost:6379", group="cms-sync")

    @log.handler
    async def moved(update: ScheduleRescheduled) -> None:
        print(update.subject, "moved:", update.data.item)

    app = log.app()          # a FastStream app: `faststream run mymodule:app`

What it sets up, so that no handler loses an update (FastStream's defaults would:
`../shared/notes/faststream-redis.md`, and `docs/decisions.md`):
- the consumer group is created at `0` on every partition before the broker starts,
  so updates appended before the app first ran are delivered too;
- one process of a group reads at a time (a lease; others wait as standbys), so one
  story's updates reach the handlers in log order;
- at start it takes over the group's pending entries (a previous process's, killed
  mid-batch) and handles them first, in order;
- its own parser hands the handlers the contract's typed updates (one msgspec decode,
  not FastStream's JSON parsing twice); acknowledgement is manual, after every handler
  of a batch returned;
- a batch is handled only once nothing before it is pending here: a read whose reply
  was lost on a dropped connection (the server moved its entries to pending, and
  FastStream reads on) is read again first, so no batch overtakes it;
- a handler that raises is logged with the update's position; the partition stops
  there and retries from that update, every `retry_s`, in order; after `max_attempts`
  the update is parked in the group's dead letters (`dateline dlq`), with the later
  updates of its story behind it, and the rest of the partition goes on;
- after the fix, `dateline dlq redrive STORY --group G` asks the app to handle the
  story's parked updates again, in log order; its retry loop does, and unparks the
  story if they all pass (if one fails again, those before it are done and the story
  stays parked behind it: the failure is logged and told to whoever asked).

Handlers are at-least-once: an update can come again after a crash between the
handler's effect and the acknowledgement. Make them idempotent (`update.source` and
`update.id` name an update for good).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import time
import traceback
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
import structlog
from faststream import AckPolicy, FastStream
from faststream.message import StreamMessage
from faststream.redis import RedisBroker, RedisClusterBroker, StreamSub
from redis.exceptions import NoPermissionError, ResponseError

from dateline.domain.positions import stream_id
from dateline.runtime import groups
from dateline.runtime.leases import Leases
from dateline.runtime.patience import patiently
from dateline.store.connection import (
    UNREACHABLE,
    cluster_mode,
    described,
    find_keys_locally,
    open_client,
    outage,
    write_refusal,
)
from dateline.store.deadletters import DeadLetters, Delivery, Parking
from dateline.store.layout import Keys
from dateline.store.log import log_keys, story_or_none
from dateline.store.replies import as_text
from dateline.store.seal import Sealing, Unsealed
from dateline_schemas import Update, decode_record

log = structlog.get_logger("dateline.kit")
BEHIND = "parked behind an earlier update of this story"
Outcome = Literal["handled", "failed", "parked"]
STUCK_AFTER_S = 10.0
"""An entry pending this long in this process is handled again (`_find_stuck`)."""
T = typing.TypeVar("T")


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of a partition of the log."""

    partition: int
    entry_id: str
    raw: bytes
    """The stored record: the update's CloudEvent with `version`, `position`, `recordedtime`."""

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.entry_id}"

    def update(self) -> Update:
        """The typed update (the contract's decoder, with its upcasters)."""
        return decode_record(self.raw)


@dataclass(slots=True)
class Batch:
    """Entries of one partition, in log order, for a batch handler."""

    partition: int
    stream: str
    group: str
    entries: list[LogEntry]
    acked: bool = False
    redrive: bool = False
    """Parked entries handed on again at ops' request (`dateline dlq redrive`)."""

    def ack_in(self, pipe: Any) -> None:
        """Acknowledge the batch in the handler's own transaction (`MULTI`): its writes
        and the acknowledgement then happen together or not at all."""
        pipe.xack(self.stream, self.group, *[e.entry_id for e in self.entries])
        self.acked = True


BatchHandler = Callable[[Batch], Awaitable[None]]


class DatelineLog:
    """Subscribers on every partition of the log, through one consumer group."""

    def __init__(
        self,
        url: str,
        *,
        group: str,
        consumer: str | None = None,
        prefix: str = "dateline",
        partitions: int | None = None,
        batch_size: int = 500,
        max_attempts: int = 5,
        retry_s: float = 1.0,
        lease_ttl_ms: int = 10_000,
        broker: RedisBroker | None = None,
        seal_key: bytes | None = None,
        cluster: bool | None = None,
    ) -> None:
        """`seal_key`: the key that opens a sealed log's records (`dateline.store.seal`);
        handlers get each record as the append function wrote it, and an entry written
        around it fails like a handler error: retried, then parked with the reason.

        `cluster`: is `url` a node of a Redis Cluster? Unsaid, the app asks the server
        when it starts, and takes FastStream's cluster broker if so."""
        self.url, self.group, self.prefix = url, group, prefix
        self.seal_key = seal_key
        self._sealing = Sealing(seal_key, Keys(prefix, partitions or 1))
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.partitions, self.batch_size = partitions, batch_size
        self.max_attempts, self.retry_s, self.lease_ttl_ms = max_attempts, retry_s, lease_ttl_ms
        self._broker = broker or (None if cluster is None else _broker(url, cluster))
        self.handlers: dict[type[Any], list[Callable[[Any], Awaitable[None]]]] = {}
        self.batch_handler: BatchHandler | None = None
        self.parking: BatchHandler | None = None
        self.lost = asyncio.Event()
        """Set when the lease was lost (another process took the group over)."""
        self._unnamed = False
        """Its heartbeat refused (`_say_alive`): not tried again."""
        self._client: aioredis.Redis | None = None
        self._keys: Keys | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._behind: set[int] = set()
        self._done: dict[int, tuple[int, int]] = {}
        """Per partition, the last entry acknowledged here (handled or parked)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribers: list[Any] = []
        self._app: FastStream | None = None

    # Registering handlers

    def handler(self, fn: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """Register `async def f(update: SomeType | OtherType)`: called for those types."""
        hints = typing.get_type_hints(fn)
        params = list(inspect.signature(fn).parameters)
        if not params or params[0] not in hints:
            raise TypeError(f"{fn.__name__}: annotate its first parameter with update types")
        return self.on(*_classes(hints[params[0]]))(fn)

    def on(
        self, *classes: type[Any]
    ) -> Callable[[Callable[[Any], Awaitable[None]]], Callable[[Any], Awaitable[None]]]:
        """Register a handler for updates of these classes (every update if none)."""

        def register(fn: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
            for cls in classes or (object,):
                self.handlers.setdefault(cls, []).append(fn)
            return fn

        return register

    def batches(self, fn: BatchHandler, *, parking: BatchHandler | None = None) -> BatchHandler:
        """Register one handler for whole batches (it may ack in its own transaction).

        `parking`: called with entries about to be parked, the handler's last failure or
        behind an earlier parked update of their story, under the partition's lock and
        before their dead letters are written: what a redrive of them needs to know
        that only this moment tells (the fan-out's: which outboxes lack them). If it
        raises, nothing is parked, and the entries are tried again."""
        self.batch_handler, self.parking = fn, parking
        return fn

    def app(
        self,
        *,
        after_startup: Sequence[Callable[[], Awaitable[None]]] = (),
        on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> FastStream:
        """The FastStream app: the kit starts after the broker (then `after_startup`) and
        stops before it (then `on_shutdown`)."""
        self._app = FastStream(
            *([] if self._broker is None else [self._broker]),
            on_startup=[] if self._broker is not None else [self._find_broker],
            after_startup=[self.start, *after_startup],
            on_shutdown=[self.stop, *on_shutdown],
        )
        return self._app

    @property
    def broker(self) -> RedisBroker:
        """FastStream's broker: a cluster's where `url` is a cluster node."""
        if self._broker is None:
            raise RuntimeError("DatelineLog's broker is chosen when its app starts")
        return self._broker

    async def _find_broker(self) -> None:
        self._broker = _broker(
            self.url, await patiently("find the server", lambda: cluster_mode(self.url))
        )
        assert self._app is not None  # noqa: S101 - only its app calls this
        self._app.add_broker(self._broker)

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("DatelineLog is not started")
        return self._client

    @property
    def keys(self) -> Keys:
        if self._keys is None:
            raise RuntimeError("DatelineLog is not started")
        return self._keys

    # Running

    async def start(self) -> None:
        """Take the group's lease, make the groups, handle what is pending, subscribe;
        from the beginning again while the server cannot be reached (it is restarting, or
        a cluster is failing a master over): a process started then waits, and says so."""

        async def once() -> None:
            try:
                await self._start()
            except UNREACHABLE:
                with contextlib.suppress(Exception):  # what it made so far: client, lease
                    await self.stop()
                raise

        await patiently("start", once)

    async def _start(self) -> None:
        self._client = client = await open_client(self.url)
        if isinstance(self.broker, RedisClusterBroker):
            # Its reads name their stream: no `COMMAND GETKEYS` round trip a read.
            find_keys_locally(self.broker._cluster_state.client)  # FastStream names it so
        self._keys = keys = await log_keys(client, self.prefix, self.partitions, create=False)
        partitions = keys.partitions
        self._sealing = Sealing(self.seal_key, keys)
        await self._sealing.refresh(client, force=True)
        self._lease = Leases(
            client, keys.group(self.group), self.consumer, self.lease_ttl_ms, ["all"]
        )
        self._dead = DeadLetters(client, self.prefix, self.group)
        await self._say_alive()
        while not await self._lease.acquire(0):
            log.info("standby: another process reads this group", group=self.group)
            await asyncio.sleep(self.lease_ttl_ms / 3000)
            await self._say_alive()
        for p in range(partitions):
            stream = keys.log(p)
            await groups.ensure_group(client, stream, self.group)
            moved = await groups.claim_all(client, stream, self.group, self.consumer)
            self._locks[p] = asyncio.Lock()
            self._behind.add(p)  # its pending entries first, ours and the claimed ones
            if moved:
                log.info("took over pending entries", partition=p, entries=moved)
        for p in range(partitions):
            await self._catch_up(p)
        for p in range(partitions):
            sub = self.broker.subscriber(
                stream=StreamSub(
                    keys.log(p),
                    group=self.group,
                    consumer=self.consumer,
                    batch=True,
                    max_records=self.batch_size,
                ),
                parser=_parse,
                decoder=_entries_of(p),
                ack_policy=AckPolicy.MANUAL,
                persistent=False,
            )
            sub(self._on_batch(p))
            await sub.start()
            self._subscribers.append(sub)
        self._tasks = [
            asyncio.create_task(self._keep_lease()),
            asyncio.create_task(self._retry_loop()),
        ]
        log.info("subscribed", group=self.group, consumer=self.consumer, partitions=partitions)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in self._subscribers:
            await _stopped(sub)
        self._subscribers.clear()
        if self._client is not None:
            await self._leave()
            try:
                await self._lease.release(0)
            except UNREACHABLE:  # the outage is said where it was met; the lease lapses
                pass
            except Exception as exc:  # it lapses by itself: another process waits that long
                log.warning(
                    "the lease was not given back; it lapses in its time",
                    group=self.group,
                    lapses_in_ms=self.lease_ttl_ms,
                    error=described(exc),
                )
            await self._client.aclose()
            self._client = None

    def _on_batch(self, partition: int) -> Callable[[list[LogEntry]], Awaitable[None]]:
        async def on_batch(entries: list[LogEntry]) -> None:
            async with self._locks[partition]:
                if partition in self._behind:
                    return  # left pending: the retry loop takes it, in order
                # A batch read before a retry took the lock can hold entries the retry
                # found pending and handled meanwhile: not twice.
                done = self._done.get(partition, (0, 0))
                fresh = [e for e in entries if stream_id(e.entry_id) > done]
                try:
                    if fresh and await self._skipped(partition, fresh[0]):
                        log.warning(
                            "entries pending before this batch (a read's reply was lost); "
                            "reading them again first",
                            group=self.group,
                            partition=partition,
                        )
                        self._behind.add(partition)
                        return
                    await self._handle(partition, fresh)
                except Exception as exc:
                    # Not one batch later of this partition before this one: the retry
                    # loop reads what is pending again, in order.
                    self._behind.add(partition)
                    if not isinstance(exc, UNREACHABLE):
                        raise
                    log.warning(
                        f"{outage(exc)}; the partition waits",
                        group=self.group,
                        partition=partition,
                        error=described(exc),
                    )

        return on_batch

    async def _skipped(self, partition: int, first: LogEntry) -> bool:
        """Is an entry before `first` pending here? Then a read's reply was lost on a
        dropped connection (the server moved its entries to pending, FastStream never
        got them, and read on): handled now, this batch would overtake them."""
        oldest = await self.client.xpending_range(
            self.keys.log(partition),
            self.group,
            min="-",
            max="+",
            count=1,
            consumername=self.consumer,
        )
        if not oldest:
            return False
        pending = typing.cast(bytes | str, oldest[0]["message_id"])
        return stream_id(as_text(pending)) < stream_id(first.entry_id)

    async def _handle(self, partition: int, entries: list[LogEntry]) -> Outcome:
        """Handle and acknowledge; on failure log it, and count it against a lone entry."""
        keys = self.keys
        parked = await self._dead.parked()
        held = [e for e in entries if _story(e) in parked]
        if held:
            behind = [
                Parking(self._delivery(partition, e), BEHIND, "", parked[_story(e)]) for e in held
            ]
            await self._park(partition, held, behind)
            self._settled(held)
            entries = [e for e in entries if e not in held]
        if not entries:
            return "handled"
        opened, refused = await self._opened(partition, entries)
        batch = Batch(partition, keys.log(partition), self.group, opened)
        try:
            if opened:
                await self._dispatch(batch)
            if refused is not None:
                raise _Failed(len(opened), refused)
        except _Failed as failed:
            at, exc = failed.at, failed.error
        except Exception as exc_:
            at, exc = None, exc_
        else:
            return "handled"
        self._behind.add(partition)
        # Typed handlers name the update that failed (those before it are acknowledged);
        # a batch handler does not, and the retry finds it one entry at a time.
        culprit = entries[0] if at is None else entries[at]
        # A failure counts towards parking the update only when it is known to be this
        # update's, and the server was reachable, took writes and let this user run the
        # command: an outage, a store out of memory or disk (on a cluster, the outbox's
        # node, not the dead letters'), or an ACL that lacks a command is no fault of the
        # update, and parking it would leave it behind for good.
        refusal = "NOPERM" if isinstance(exc, NoPermissionError) else write_refusal(exc)
        counts = (
            (at is not None or len(entries) == 1)
            and not isinstance(exc, UNREACHABLE)
            and refusal is None
        )
        attempts = await self._dead.failed(self._delivery(partition, culprit)) if counts else 0
        where = {"group": self.group, "position": culprit.position, "story": _story(culprit)}
        # The server's state, until ops act or it is back: one line a try, no traceback.
        if refusal is not None:
            log.warning(
                "a server refuses this user a command (its ACL); retrying from this update, "
                "not counted against it"
                if refusal == "NOPERM"
                else "a server refuses writes; retrying from this update, not counted against it",
                **where,
                refusal=refusal,
                error=str(exc),
            )
        elif isinstance(exc, UNREACHABLE):  # the handler's store, down or failing over
            log.warning(
                f"{outage(exc)}; retrying from this update, not counted against it",
                **where,
                error=described(exc),
            )
        else:
            log.error(
                "handler failed; retrying from this update",
                **where,
                attempt=attempts or None,
                error=described(exc),
                exc_info=exc,
            )
        if attempts >= self.max_attempts:
            trace = "".join(traceback.format_exception(exc))
            await self._park(
                partition,
                [culprit],
                [Parking(self._delivery(partition, culprit), described(exc), trace)],
            )
            self._settled([culprit])
            log.error("update parked", group=self.group, position=culprit.position)
            return "parked"
        return "failed"

    async def _park(self, partition: int, entries: list[LogEntry], parkings: list[Parking]) -> None:
        if self.parking is not None:
            await self.parking(Batch(partition, self.keys.log(partition), self.group, entries))
        await self._dead.park(parkings)

    async def _opened(
        self, partition: int, entries: list[LogEntry]
    ) -> tuple[list[LogEntry], Unsealed | None]:
        """The entries up to the first the seal refuses, opened; and that refusal."""
        await self._sealing.refresh(self.client)
        opened: list[LogEntry] = []
        for e in entries:
            try:
                raw = self._sealing.entry(partition, e.entry_id, e.raw)
            except Unsealed as exc:
                return opened, exc
            opened.append(e if raw is e.raw else LogEntry(partition, e.entry_id, raw))
        return opened, None

    async def _dispatch(self, batch: Batch) -> None:
        if self.batch_handler is not None:
            await self.batch_handler(batch)
            if batch.acked:
                self._settled(batch.entries)
            else:
                await self._ack(batch.stream, batch.entries)
            return
        for n, entry in enumerate(batch.entries):
            try:
                update = entry.update()
                for fn in self.handlers.get(type(update), []) + self.handlers.get(object, []):
                    await fn(update)
            except Exception as exc:
                if n:
                    await self._ack(batch.stream, batch.entries[:n])
                raise _Failed(n, exc) from exc
        await self._ack(batch.stream, batch.entries)

    async def _ack(self, stream: str, entries: list[LogEntry]) -> None:
        await self.client.xack(stream, self.group, *[e.entry_id for e in entries])
        self._settled(entries)

    def _settled(self, entries: list[LogEntry]) -> None:
        for entry in entries:
            at = stream_id(entry.entry_id)
            if at > self._done.get(entry.partition, (0, 0)):
                self._done[entry.partition] = at

    async def _catch_up(self, partition: int) -> None:
        """Handle the partition's pending entries in order. Once a batch failed, one entry
        at a time: the update at fault is found, retried and in the end parked, and the
        rest go on."""
        async with self._locks[partition]:
            stream, one = self.keys.log(partition), False
            while True:
                count = 1 if one else self.batch_size
                got = await groups.read(
                    self.client, self.group, self.consumer, {stream: "0"}, count, None
                )
                found = got.get(stream, [])
                if not found:
                    self._behind.discard(partition)
                    return
                entries = [LogEntry(partition, eid, f.get(b"__data__", b"")) for eid, f in found]
                outcome = await self._handle(partition, entries)
                if outcome == "failed":
                    if one:
                        return  # the next retry tries it again
                    one = True

    async def _retry_loop(self) -> None:
        checked = 0.0
        while True:
            await asyncio.sleep(self.retry_s)
            if time.monotonic() - checked >= STUCK_AFTER_S:
                checked = time.monotonic()
                try:
                    await self._find_stuck()
                except Exception:  # an error it does not expect ended the loop, unsaid
                    log.exception("looking for entries left pending failed", group=self.group)
            for p in sorted(self._behind):
                try:
                    await self._catch_up(p)
                except Exception:
                    log.exception("retry failed; trying again", group=self.group, partition=p)
            try:
                for story in await self._dead.redrives_asked():
                    await self._redrive(story)
            except UNREACHABLE as exc:  # asked still: served on a later turn
                log.warning(f"{outage(exc)}; redrives wait", group=self.group, error=described(exc))
            except Exception:
                log.exception("redrive failed; asked still, trying again", group=self.group)

    async def _redrive(self, story: str) -> None:
        """Handle a parked story's updates again, in log order, as ops asked; unpark it
        if they all pass. The partition's lock is held: nothing of it is handled, or
        parked behind the story, meanwhile."""
        partition = self.keys.partition(story)
        async with self._locks[partition]:
            letters = await self._dead.letters(story)
            entries = [LogEntry(x.partition, x.entry_id, x.record) for x in letters]
            opened, refused = await self._opened(partition, entries)
            try:
                if opened:
                    # Acknowledged when they were parked: acknowledging again changes nothing.
                    await self._dispatch(
                        Batch(partition, self.keys.log(partition), self.group, opened, redrive=True)
                    )
                if refused is not None:
                    raise _Failed(len(opened), refused)
            except _Failed as failed:
                at, error = failed.at, failed.error
            except UNREACHABLE:
                raise
            except Exception as exc:  # a batch handler's: which update failed is unknown
                at, error = 0, exc
            else:
                await self._dead.redriven(story, letters, [], "")
                log.info("redriven", group=self.group, story=story, updates=len(letters))
                return
            why = f"{letters[at].ref}: {described(error)}"
            await self._dead.redriven(story, letters[:at], letters[at:], why)
            log.error(
                "redrive failed; the story stays parked behind this update",
                group=self.group,
                story=story,
                position=letters[at].ref,
                handled=at,
                error=described(error),
                exc_info=error,
            )

    async def _find_stuck(self) -> None:
        """Entries pending here for long: a read whose reply was lost on a dropped
        connection (FastStream then reads on, and never reads its pending entries). The
        partition goes behind, and its retry handles them first, in order."""
        for p in range(self.keys.partitions):
            if p in self._behind:
                continue
            try:
                stuck = await self.client.xpending_range(
                    self.keys.log(p),
                    self.group,
                    min="-",
                    max="+",
                    count=1,
                    consumername=self.consumer,
                    idle=int(STUCK_AFTER_S * 1000),
                )
            except UNREACHABLE:
                return
            if stuck:
                log.warning("entries left pending; handling them first", partition=p)
                self._behind.add(p)

    async def _say_alive(self) -> None:
        """The group's members set names this process (its heartbeat, `Leases`), reading
        or standing by, so `dateline status` and the operations page name the standbys
        too. A user whose ACL may not (one older than `deploy/users.acl`'s) is said once,
        and the process works on unnamed."""
        if self._unnamed:
            return
        try:
            await self._lease.heartbeat()
        except ResponseError as exc:
            self._unnamed = True
            log.warning(
                "this process is not named among the group's processes: its user may not "
                "write the members set (ZADD, ZREMRANGEBYSCORE, ZCARD, TIME)",
                group=self.group,
                error=described(exc),
            )

    async def _leave(self) -> None:
        """Out of the group's members at once; else named until its heartbeat runs out."""
        if self._unnamed:
            return
        try:
            await self._lease.leave()
        except UNREACHABLE:  # the outage is said where it was met
            pass
        except Exception as exc:
            log.warning(
                "this process stays named among the group's until its heartbeat runs out",
                group=self.group,
                lapses_in_ms=self.lease_ttl_ms,
                error=described(exc),
            )

    async def _keep_lease(self) -> None:
        down = False
        while True:
            await asyncio.sleep(self.lease_ttl_ms / 3000)
            try:
                await self._say_alive()
                kept = await self._lease.renew(0) or await self._lease.acquire(0)
            except UNREACHABLE as exc:
                if not down:
                    log.warning(
                        f"{outage(exc)}; the lease waits", group=self.group, error=described(exc)
                    )
                down = True
                continue
            except Exception:  # ended the lease's keeping, unsaid: said, and tried again
                log.exception("renewing the lease failed; trying again", group=self.group)
                down = True
                continue
            if kept and down:
                # It may have run out meanwhile and been taken again: what is pending
                # here is read again first, in order.
                log.warning("lease held again; what is pending is read first", group=self.group)
                self._behind.update(range(self.keys.partitions))
            down = False
            if not kept:
                log.error("lease lost: another process reads this group now", group=self.group)
                self.lost.set()
                if self._app is not None:
                    self._app.exit()
                return

    def _delivery(self, partition: int, entry: LogEntry) -> Delivery:
        return Delivery(
            partition, self.keys.log(partition), entry.entry_id, _story(entry), entry.raw
        )


STOP_TRIES = 50
"""Cancellations sent, 0.1 s apart, to a subscriber's reading task that outlives its stop."""


async def _stopped(sub: Any) -> None:
    """`sub.stop()`, and its reading tasks ended. FastStream cancels them once, and a task
    outlived that in about half the runs of eight stops of the delivery service: it read
    on after its app stopped and logged "Message fetch error" once its connection closed.
    A cancellation lost as a read completes is the likeliest cause (as `asyncio.wait_for`
    loses them on Python 3.11, python/cpython#86296; not proven). Each task left is
    cancelled again until it ends: then none was left in 32 stops."""
    tasks = [t for t in getattr(sub, "tasks", ()) if not t.done()]
    await sub.stop()
    for _ in range(STOP_TRIES):
        if tasks:  # the cancellation already sent lands first
            await asyncio.wait(tasks, timeout=0.1)
        tasks = [t for t in tasks if not t.done()]
        if not tasks:
            return
        for task in tasks:
            task.cancel()
    log.error("a subscriber's task would not stop", tasks=len(tasks))


def _broker(url: str, cluster: bool) -> RedisBroker:
    # FastStream's per-batch lines at DEBUG (at INFO they cost a fifth of the
    # throughput); its warnings and errors, such as a lost connection, reach the log.
    kind = RedisClusterBroker if cluster else RedisBroker
    return kind(url, apply_types=False, logger=FastStreamLogs(), log_level=logging.DEBUG)


class FastStreamLogs:
    """FastStream's logger: its warnings and errors into structlog, the chatter dropped."""

    def __init__(self, at_least: int = logging.WARNING) -> None:
        self.at_least = at_least
        self._log = structlog.get_logger("faststream")

    def log(
        self,
        level: int,
        msg: Any,
        /,
        *,
        exc_info: Any = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if level < self.at_least:
            return
        if isinstance(exc_info, UNREACHABLE):  # an outage: expected, one line
            self._log.warning(str(msg), error=described(exc_info))
            return
        self._log.log(level, str(msg), exc_info=exc_info, **(extra or {}))


class _Failed(Exception):
    """Update `at` of a batch failed with `error`; the ones before it were handled."""

    def __init__(self, at: int, error: Exception) -> None:
        super().__init__(at, error)
        self.at, self.error = at, error


def _story(entry: LogEntry) -> str:
    return story_or_none(entry.raw) or ""


async def _parse(message: Any) -> StreamMessage[Any]:
    # One argument: FastStream's own batch parser would parse every entry's JSON twice.
    return StreamMessage(raw_message=message, body=b"")


def _entries_of(partition: int) -> Callable[[StreamMessage[Any]], Awaitable[list[LogEntry]]]:
    async def decode(message: StreamMessage[Any]) -> list[LogEntry]:
        raw = message.raw_message
        return [
            LogEntry(partition, eid.decode(), fields.get(b"__data__", b""))
            for eid, fields in zip(raw["message_ids"], raw["data"], strict=True)
        ]

    return decode


def _classes(annotation: Any) -> tuple[type[Any], ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(a for arg in typing.get_args(annotation) for a in _classes(arg))
    if isinstance(annotation, type):
        return () if annotation is object else (annotation,)
    raise TypeError(f"not an update type: {annotation!r}")
