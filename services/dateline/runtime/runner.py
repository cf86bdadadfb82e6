"""The read loop every consuming service runs: leases, pending first, then new, in order.

One cycle: keep our partition leases (take over expired ones, claiming the dead
owner's pending entries); re-read our own pending entries when retries are due
(at start, after a takeover, after a failure); then read new entries. Entries of
a story whose earlier entry failed wait (pending) until that entry is retried, so
a story is never applied out of order; after `max_attempts` failures the entry
and everything behind it of that story are parked as dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import redis.asyncio as aioredis
import structlog

from dateline.domain.positions import stream_id
from dateline.runtime import groups
from dateline.runtime.leases import Leases
from dateline.runtime.metrics import PARKED
from dateline.runtime.wakes import Wakes
from dateline.store.connection import (
    UNREACHABLE,
    described,
    is_cluster,
    outage,
    sent,
    write_refusal,
)
from dateline.store.deadletters import DeadLetters, Delivery, Parking
from dateline.store.layout import Keys
from dateline.store.log import AppendFunctionMissing, LogMoving, NotReplicated

log = structlog.get_logger("dateline.runtime")
SHORT_CHECK_S = 0.5
"""How often a process below its share looks for free partitions while another process
holds more than its share (and so hands some over at its next check)."""


FOCUS = 32
"""While partitions are behind, each of the others reads 1/FOCUS of an even share."""
BEHIND_S = 1.0
"""A partition is behind when a read of it came back full and its last entry had waited
this long: catching up, not keeping up. Keeping up, every partition is read evenly: with
one in turn taking most of each cycle, the others' entries waited several cycles, and the
p99 from append to read model at 5,000 updates/s went from 87 to 862 ms."""


class Handler(Protocol):
    async def handle(self, deliveries: list[Delivery]) -> dict[str, BaseException]:
        """Apply deliveries (of one or more partitions, each in log order) and ack the
        applied ones atomically with the writes. Return the entries that failed, by
        `Delivery.ref`: a failed entry and the later entries of its story must be left
        unapplied and unacknowledged."""

    async def settle(self, streams: dict[int, str]) -> None:
        """Entries of these partitions (`{partition: stream}`) were parked (and so
        acknowledged) without a call to `handle`: a handler that keeps a checkpoint
        moves it past them."""


class Prepared(Protocol):
    @property
    def failures(self) -> dict[str, BaseException]:
        """The entries that failed as it was prepared (`Handler.handle`'s answer)."""


P = TypeVar("P", bound=Prepared)


@runtime_checkable
class Pipelined(Handler, Protocol[P]):
    """A handler whose batch is prepared apart from its commit: the runner reads and
    prepares the next batch while a commit is on the wire (`Runner._flow`)."""

    async def prepare(self, deliveries: list[Delivery]) -> P:
        """Everything but the writes; what it keeps, it keeps as if the commit were made."""

    async def commit(self, prepared: P) -> dict[str, BaseException] | None:
        """The writes: `handle`'s answer, or None if nothing was written and the batch
        must be handled anew (another writer moved one of its stories on)."""

    def forget(self, prepared: P) -> None:
        """A prepared batch will not be committed."""


@runtime_checkable
class Apart(Protocol):
    """A handler whose writes go to a store apart from the log (the projector's read
    models with `DATELINE_VIEWS_URL`): it acknowledges on the log after its store took a
    batch, and that store may lose its last writes (a crash under `everysec`)."""

    apart: bool
    """Is its store apart from the log now? (The projector's is only when configured.)"""

    def owed(self, force: bool = True) -> list[tuple[str | int, ...]]:
        """Acknowledgements for the log not sent yet, taken: a read carries them (not
        `force`d, it may be told none are due yet)."""

    async def resume(self, streams: dict[int, str]) -> None:
        """These partitions (`{partition: stream}`) were just taken, or held through a
        failure: have the group deliver again whatever the store lacks."""

    async def behind(self) -> bool:
        """Did the store lose writes it had answered for? (Asked at each lease check, so
        that a loss no commit meets is found too.)"""


class StoreBehind(Exception):
    """A handler's store lost writes it had answered for (`Apart`): the runner resumes
    its partitions from where the store is."""


FLOW_CYCLES = 16
"""Cycles back to back in one step at most (`Runner._flow`)."""


@dataclass
class _InFlight:
    commit: Awaitable[dict[str, BaseException] | None]
    batches: dict[int, groups.Entries]
    todo: list[Delivery]


POLL_S = (0.001, 0.025)
"""On a cluster, where no blocking read names every partition: the pause after a cycle
that found nothing, from the first to the longest (doubling), until one finds work,
while a partition has no waiter to ring (`wakes.py`)."""
RING_S = (0.025, 0.5)
"""The same, while every partition read has a waiter: the pause ends at a ring, and
what it bounds is how soon a lost ring's entries are read anyway."""


@dataclass(frozen=True)
class RunnerConfig:
    group: str
    consumer: str
    batch: int = 1000
    """Entries a cycle at most, over all the partitions it reads (one a partition at least)."""
    block_ms: int | None = 500
    """How long a read waits for new entries when the last cycle found none. None: it never
    waits, for a runner that catches up with what is there and stops (a rebuild's)."""
    max_attempts: int = 3
    lease_ttl_ms: int = 10_000
    retry_delay_s: float = 0.2


@dataclass
class _Partition:
    stream: str
    drain_from: str | None = "0"  # re-read own pending from here; None: nothing to re-read
    retry_at: float = 0.0
    blocked: set[str] = field(default_factory=set)
    delivered: str | None = None
    """The last entry a read of new entries returned since the lease was taken."""
    reads: int = 0
    """How many entries reads of new entries returned since the lease was taken."""


def _age(entry_id: str, now: float) -> float:
    """Seconds since the server gave out a stream entry id (its time is in it)."""
    return now - int(entry_id.split("-", 1)[0]) / 1000


class Runner:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        config: RunnerConfig,
        handler: Handler,
        key_of: Callable[[bytes], str],
        streams: list[str] | None = None,
        cycle: Callable[[int], int] | None = None,
    ) -> None:
        """`cycle(batch)`: how many entries the next cycle may read, if the handler
        knows better than `batch` (the projector does: its states' size)."""
        self.client, self.keys, self.config, self.handler, self.key_of = (
            client,
            keys,
            config,
            handler,
            key_of,
        )
        self.cycle = cycle
        # The partition streams by default; any streams (a validator's inboxes) if given.
        self.streams = streams if streams is not None else keys.logs()
        self.leases = Leases(
            client,
            keys.group(config.group),
            config.consumer,
            config.lease_ttl_ms,
            None if streams is None else list(streams),
        )
        self.dead = DeadLetters(client, keys.prefix, config.group)
        self.owned: dict[int, _Partition] = {}
        self._leases_checked = 0.0
        self._lease_check_s = 0.0
        self._behind: set[str] = set()
        """Streams whose last read of new entries came back full of old ones (`BEHIND_S`)."""
        self._turn = 0
        self.polls = is_cluster(client)
        """On a cluster: no blocking read, but reads and pauses (`POLL_S`)."""
        self._pause = POLL_S[0]
        self.wakes = (
            Wakes(client, config.group, self._since)
            if self.polls and config.block_ms is not None
            else None
        )
        """On a cluster, for a runner that keeps up (not a rebuild's, which stops at the
        first read that finds nothing): the partitions' waiters, whose rings end a pause."""
        self._found = False
        """Did the last cycle find entries?"""
        self._found_in = len(self.streams)
        """In how many partitions did the last cycle's read find new entries? (Before the
        first, every one, as if: the first cycle reads them all.)"""
        self.pipelined: Pipelined[Any] | None = handler if isinstance(handler, Pipelined) else None
        self._backlog = False
        """Did the last read of new entries come back full (more are waiting)?"""
        self._flying: _InFlight | None = None
        """A commit `_flow` sent and has not seen land."""
        self.apart: Apart | None = handler if isinstance(handler, Apart) and handler.apart else None
        self._resume = False
        """After a failure: the partitions held are resumed (`Apart.resume`) first."""

    def delivered(self, partition: int) -> str | None:
        """How far the group has delivered a partition held here, at least: the last entry
        a read of new entries (`>`) returned since its lease was taken, for only reads move
        the group's last-delivered id and this process alone reads the partition while it
        holds the lease. None while unknown: before that read; after a failure, which
        may have been the server's (started again, it may have lost its last second under
        `everysec`, the group's deliveries with it); and once a drain of the partition's
        pending entries brings one past it (claimed from a consumer delivered further)."""
        held = self.owned.get(partition)
        if held is None or held.drain_from is not None or held.blocked:
            return None  # entries it holds pending may lie under it
        return held.delivered

    def tally(self, partition: int) -> tuple[object, int] | None:
        """This process's hold on a partition (another object each time its lease is
        taken) and how many entries reads of new entries returned under it; None if not
        held. Between two commits under one hold, the entries read are the commit's, or
        some were set aside (parked, say): the carried pages count them (`store/pages.py`)."""
        held = self.owned.get(partition)
        return None if held is None else (held, held.reads)

    def follow(self, streams: list[str]) -> list[str]:
        """Consume these streams too, from the next lease check; returns the new ones.

        For the validator: a feed registered while it runs gets its inbox read.
        """
        new = [s for s in streams if s not in self.streams]
        for stream in new:
            self.streams.append(stream)
            if self.leases.names is not None:
                self.leases.names.append(stream)
        if new:
            self._leases_checked = 0.0
        return new

    async def run(self, stop: asyncio.Event) -> None:
        log.info("consumer started", group=self.config.group, consumer=self.config.consumer)
        down_since: float | None = None
        try:
            while not stop.is_set():
                try:
                    await self.step()
                except UNREACHABLE as exc:
                    down_since = await self._outage(stop, down_since, exc)
                    continue
                if down_since is not None:
                    log.warning(
                        "Redis reachable again; consuming",
                        group=self.config.group,
                        down_s=round(time.monotonic() - down_since, 1),
                    )
                    down_since = None
        finally:
            try:
                released = await self.release_all()
            except UNREACHABLE:  # they run out by themselves, after the lease's time to live
                released = 0
            log.info("consumer stopped", group=self.config.group, released=released)

    async def _outage(self, stop: asyncio.Event, since: float | None, exc: Exception) -> float:
        """The server is down: say so once, re-read every partition's pending entries when
        it is back (a read whose reply was lost left entries pending), wait a little."""
        now = time.monotonic()
        if since is None:
            log.warning(
                f"{outage(exc)}; waiting for it", group=self.config.group, error=described(exc)
            )
            since = now
        for p in self.owned.values():
            p.drain_from = "0"
        self._forget_delivered()
        self._resume = True
        self._leases_checked = 0.0  # leases may have run out meanwhile: check them first
        wait = min(2.0, 0.1 * 2 ** min(8, int(now - since)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
        return since

    async def release_all(self) -> int:
        """Give every partition back and leave the members: the others take them at once
        and count without this process. Returns how many partitions it held."""
        held = len(self.owned)
        if self.wakes is not None:
            await self.wakes.close()
        await self._pay()
        for p in list(self.owned):
            await self.leases.release(p)
        self.owned.clear()
        await self.leases.leave()
        return held

    async def step(self) -> int:
        """One cycle; returns how many entries it handed out or parked."""
        await self._keep_leases()
        if self._resume and self.apart is not None:
            await self.apart.resume({n: p.stream for n, p in self.owned.items()})
            self._forget_delivered()
        self._resume = False
        done = await self._drain_pending()
        ready = {p.stream: ">" for p in self.owned.values() if p.drain_from is None}
        self._behind &= ready.keys()  # a partition handed over or draining is not read here
        among = len(ready)
        if ready and self.wakes is not None:
            ready = await self._woken(self.wakes, ready)
        if ready:
            block = None if done or self._behind or self.polls else self.config.block_ms
            # A blocked read wakes with only the stream that woke it. What the others
            # hold waits for the next cycle's read, which does not block after one that
            # found work: a second read now cost every woken cycle a round trip, often
            # behind an fsync (p50 to the read model 4.1 to 5.1 ms with it, 3.0 to 3.6
            # without, `appendfsync always`, A/B alternated).
            got, parked = await self._read(ready, block, among)
            # Every partition's entries in one call: one transaction a cycle, not one a
            # partition, which is most of the latency when all partitions are busy.
            batches = {self._by_stream(s): e for s, e in got.items()}
            if self.pipelined is not None and self._backlog:
                done += await self._flow(self.pipelined, batches, parked)
            else:
                done += await self._process(batches, parked)
            if self.polls and self.wakes is None:
                await self._poll_pause(done)
        elif not done and not among:
            await asyncio.sleep(self._idle_s)
        self._found = done > 0
        return done

    @property
    def _idle_s(self) -> float:
        """The pause of a cycle with no partition to read (none held, or all draining)."""
        block = self.config.block_ms
        return (
            self.config.retry_delay_s
            if block is None
            else min(block / 1000, self.config.retry_delay_s)
        )

    async def _woken(self, wakes: Wakes, ready: dict[str, str]) -> dict[str, str]:
        """On a cluster, of the partitions `ready` to read, those this cycle reads.

        All after a cycle that found entries in more than one partition: cycles back to
        back, the waiters resting (at 1,000 updates/s a ring an update cost the projector
        more than the reads it spared). After one that found entries in one partition,
        those that rang since; else those that ring within the pause, or all once it
        ends. And each time those no waiter watches."""
        wakes.follow(p.stream for p in self.owned.values())
        unwatched = wakes.unwatched(ready)
        pauses = POLL_S if unwatched else RING_S
        found_in, self._found_in = self._found_in, 0  # this cycle's read counts anew
        if self._backlog or self._behind or found_in > 1:
            wakes.busy()
            self._pause = pauses[0]
            return ready
        if self._found:
            rung = await wakes.wait(0)
            self._pause = pauses[0]
        else:
            rung = await wakes.wait(min(self._pause, pauses[1]))
            if not rung:
                self._pause = min(pauses[1], self._pause * 2)
                return ready
        return {s: start for s, start in ready.items() if s in rung or s in unwatched}

    def _since(self, stream: str) -> str | None:
        """The last entry a read of new entries returned from `stream`, if held here."""
        return next((p.delivered for p in self.owned.values() if p.stream == stream), None)

    async def _poll_pause(self, done: int) -> None:
        """After a cycle on a cluster, for a runner with no waiters (a rebuild's catch-up):
        none after one that found work, else a pause that doubles while nothing comes
        (`POLL_S`): idle, a partition is read 40 times a second, and an update waits 25 ms
        at most before it is read."""
        if done:
            self._pause = POLL_S[0]
            return
        await asyncio.sleep(self._pause)
        self._pause = min(POLL_S[1], self._pause * 2)

    async def _read(
        self, streams: dict[str, str], block: int | None, among: int = 0
    ) -> tuple[dict[str, groups.Entries], dict[str, str]]:
        """Entries, and the parked stories as they are just after the read: one round trip.

        At most `batch` entries in all, shared by the partitions read: a batch's states
        are all in memory at once, and a projector catching up 8 partitions 1,000 at a
        time held 8,000 updates' worth (300,000 queued over 10,000 stories: RSS peak 573
        MB, 172 MB at 1,000 a cycle; `docs/resilience.md`). Shared evenly, though, a
        cycle of a projector catching up met each story once (125 entries a partition,
        over its 250 stories): every update paid for a story's read, fold setup and
        write, and catch-up halved. So while partitions are behind (`BEHIND_S`), one of
        them in turn takes most of the cycle and the others a little each: `_shares`."""
        reads = self._shares(streams, block, among)
        got, parked = await groups.read_and_get(
            self.client,
            self.config.group,
            self.config.consumer,
            reads,
            block,
            self.dead.parked_key,
            # On a cluster the reads go to their slots' nodes, and a commit's own
            # acknowledgements go before it asks how far it is settled (`settle`).
            [] if self.apart is None or self.polls else self.apart.owed(force=False),
        )
        for p in self.owned.values():
            if streams.get(p.stream) == ">" and (entries := got.get(p.stream)):
                p.delivered = entries[-1][0]
                p.reads += len(entries)
        if self.wakes is not None and (new := [s for s, start in streams.items() if start == ">"]):
            self.wakes.was_read(new)
            self._found_in = sum(1 for s in new if got.get(s))  # a drain's read is not counted
        now = time.time()
        self._backlog = False
        for wanted, count in reads:
            for stream, start in wanted.items():
                if start == ">":
                    entries = got.get(stream, [])
                    full = len(entries) >= count
                    self._backlog |= full
                    behind = full and _age(entries[-1][0], now) > BEHIND_S
                    (self._behind.add if behind else self._behind.discard)(stream)
        return got, parked

    def _shares(
        self, streams: dict[str, str], block: int | None, among: int
    ) -> list[tuple[dict[str, str], int]]:
        """The reads of one cycle: `(streams, count)` each. `among`: the partitions a
        cycle's entries are shared by, those read and those a ring left out."""
        size = self._cycle_size()
        behind = [s for s in streams if s in self._behind and streams[s] == ">"]
        if block is not None or not behind or len(streams) == 1:
            return [(streams, max(1, size // max(among, len(streams))))]
        self._turn += 1
        focus = behind[self._turn % len(behind)]
        rest = {s: start for s, start in streams.items() if s != focus}
        little = max(1, size // (FOCUS * len(streams)))
        return [({focus: streams[focus]}, max(1, size - little * len(rest))), (rest, little)]

    def _cycle_size(self) -> int:
        batch = self.config.batch
        return batch if self.cycle is None else max(1, min(batch, self.cycle(batch)))

    def _by_stream(self, stream: str) -> int:
        return next(n for n, p in self.owned.items() if p.stream == stream)

    async def _pay(self) -> None:
        """Send the log the acknowledgements the handler owes it (`Apart.owed`), now."""
        if self.apart is not None and (owed := self.apart.owed()):
            await sent(self.client, owed)

    def _forget_delivered(self) -> None:
        """A failure that may have been the server's: how far it delivered is unknown."""
        for p in self.owned.values():
            p.delivered = None

    async def _keep_leases(self) -> None:
        now = time.monotonic()
        if now - self._leases_checked < self._lease_check_s:
            return
        self._leases_checked = now
        await self._pay()  # before `_pending_again` counts what is pending
        if self.apart is not None and await self.apart.behind():
            self._resume = True
        members = await self.leases.heartbeat()
        share = -(-len(self.streams) // members)
        for n in list(self.owned):
            if not await self.leases.renew(n):
                log.warning("lease lost", partition=n)
                del self.owned[n]
        # Between two steps nothing of a partition is in flight here: what it holds pending
        # (failed entries waiting for a retry) the next owner claims and retries in order.
        for n in sorted(self.owned, reverse=True)[: max(0, len(self.owned) - share)]:
            await self.leases.release(n)
            del self.owned[n]
            log.info("partition handed over", partition=n, members=members, share=share)
        for n, stream in enumerate(self.streams):
            if len(self.owned) >= share:
                break
            if n not in self.owned and await self.leases.acquire(n):
                await groups.ensure_group(self.client, stream, self.config.group)
                moved = await groups.claim_all(
                    self.client, stream, self.config.group, self.config.consumer
                )
                self.owned[n] = _Partition(stream)
                if self.apart is not None:
                    await self.apart.resume({n: stream})
                log.info("partition taken", partition=n, claimed_pending=moved, members=members)
        await self._pending_again()
        # Below its share while another holds more than its own, a process looks again
        # soon: that one hands partitions over at its next check. (Not whenever it is below
        # its share: with 4 partitions over 3 processes one holds none for good.)
        waiting = len(self.owned) < share and await self._over_share(share)
        self._lease_check_s = SHORT_CHECK_S if waiting else self.config.lease_ttl_ms / 3000

    async def _pending_again(self) -> None:
        """Between two cycles nothing of a partition is in flight here, so an entry still
        pending for this consumer lost its acknowledgement: a replica promoted without the
        last writes (a failover the client's retries hid), a reply lost with its
        connection. Left so, it held the checkpoint back for good, and every reader that
        waits for the checkpoint (live streams, read-your-writes) with it. Read the
        partition's pending entries again: applied already, they are acknowledged."""
        idle = [n for n, p in self.owned.items() if p.drain_from is None]
        if not idle:
            return
        pipe = self.client.pipeline(transaction=False)
        for n in idle:
            pipe.xpending_range(
                self.owned[n].stream,
                self.config.group,
                "-",
                "+",
                1,
                consumername=self.config.consumer,
            )
        for n, found in zip(idle, await pipe.execute(), strict=True):
            if found:
                self.owned[n].drain_from = "0"
                log.warning(
                    "entries pending without a cycle holding them (an acknowledgement was "
                    "lost); reading them again",
                    partition=n,
                    first=found[0]["message_id"].decode(),
                )

    async def _over_share(self, share: int) -> bool:
        """Does another process hold more than `share` partitions?"""
        held = Counter(await self.leases.holders(len(self.streams)))
        return any(
            n > share for owner, n in held.items() if owner not in (None, self.config.consumer)
        )

    async def _drain_pending(self) -> int:
        now, done = time.monotonic(), 0
        for n, p in self.owned.items():
            if p.drain_from is None or p.retry_at > now:
                continue
            if p.drain_from == "0":
                p.blocked.clear()  # retry the failed stories, in order, from their first entry
            got, parked = await self._read({p.stream: p.drain_from}, None)
            entries = got.get(p.stream, [])
            if not entries:
                p.drain_from = None if not p.blocked else "0"
                if p.blocked:
                    p.retry_at = now + self.config.retry_delay_s
                continue
            p.drain_from = entries[-1][0]
            if p.delivered is not None and stream_id(p.drain_from) > stream_id(p.delivered):
                p.delivered = None  # claimed from a consumer that was delivered further
            done += await self._process({n: entries}, parked)
        return done

    async def _sort(
        self, batches: dict[int, groups.Entries], parked: dict[str, str]
    ) -> tuple[int, int, list[Delivery]]:
        """Park what waits behind a parked entry or names no story; returns how many
        entries the batches hold, how many of them it parked, and the rest to handle."""
        deliveries = [
            Delivery(n, self.owned[n].stream, eid, self._key(fields), fields.get(b"__data__", b""))
            for n, entries in batches.items()
            for eid, fields in entries
        ]
        # Parked already, its acknowledgement lost (`DeadLetters.park`, on a cluster).
        again = [d for d in deliveries if d.key and parked.get(d.key) == d.ref]
        behind = [
            Parking(d, "parked behind an earlier update of this story", "", parked[d.key])
            for d in deliveries
            if d.key in parked and parked[d.key] != d.ref
        ]
        unreadable = [
            Parking(d, "entry has no readable story id", "") for d in deliveries if not d.key
        ]
        todo = [
            d
            for d in deliveries
            if d.key and d.key not in parked and d.key not in self.owned[d.partition].blocked
        ]
        await self._park(behind + unreadable)
        if again:
            await self.dead.acknowledge(again)
            await self.handler.settle({d.partition: d.stream for d in again})
        return len(deliveries), len(behind) + len(unreadable), todo

    async def _process(self, batches: dict[int, groups.Entries], parked: dict[str, str]) -> int:
        count, set_aside, todo = await self._sort(batches, parked)
        try:
            failures = await self.handler.handle(todo) if todo else {}
        except Exception as exc:  # infrastructure, not the updates: all of them, later
            self._unhandled(exc, batches, len(todo))
            return set_aside
        await self._failures(batches, todo, failures)
        return count

    async def _flow(
        self, handler: Pipelined[Any], batches: dict[int, groups.Entries], parked: dict[str, str]
    ) -> int:
        """`_process`, then cycles back to back while entries keep coming: a batch's
        commit is on the wire while the next batch is read and prepared, so the server's
        share of a cycle overlaps this process's. A batch is prepared from the states
        the one before it will write; if that commit is not made, the batch prepared
        meanwhile is dropped and its entries read again (they are pending here). Any
        failed entry ends the flow: its story waits, and the next batch must know it.
        Returns with every commit landed."""
        self._flying = None
        done = 0
        try:
            done = await self._cycles(handler, batches, parked)
        finally:  # on the way out, a failure too: the last commit lands, whatever came after
            flying, self._flying = self._flying, None
            if flying is not None and not (await self._land(flying))[0]:
                done -= len(flying.todo)
        return done

    async def _cycles(
        self, handler: Pipelined[Any], batches: dict[int, groups.Entries], parked: dict[str, str]
    ) -> int:
        """`_flow`'s cycles; a commit still on the wire is left in `_flying`."""
        done = 0
        for cycle in range(FLOW_CYCLES):
            count, set_aside, todo = await self._sort(batches, parked)
            prepared, error = None, None
            if todo:
                try:
                    prepared = await handler.prepare(todo)
                except Exception as exc:  # infrastructure, not the updates
                    error = exc
            flying, self._flying = self._flying, None
            handled, made = (True, True) if flying is None else await self._land(flying)
            if flying is not None and not handled:
                done -= len(flying.todo)
            if not made:
                if prepared is not None:
                    handler.forget(prepared)
                self._read_again(batches)
                return done + set_aside
            if error is not None:
                self._unhandled(error, batches, len(todo))
                return done + set_aside
            done += count
            if prepared is not None and prepared.failures:
                handled, _ = await self._land(_InFlight(handler.commit(prepared), batches, todo))
                return done if handled else done - len(todo)
            # The next read goes first: the server answers it before it runs the commit,
            # which takes it about as long as this process's share of the next batch.
            reading = None
            if self._backlog and cycle < FLOW_CYCLES - 1 and not self._leases_due():
                ready = {p.stream: ">" for p in self.owned.values() if p.drain_from is None}
                reading = asyncio.ensure_future(self._read(ready, None))
            if prepared is not None:
                self._flying = _InFlight(
                    asyncio.ensure_future(handler.commit(prepared)), batches, todo
                )
            if reading is None:
                break
            got, parked = await reading
            if not any(got.values()):
                break
            batches = {self._by_stream(s): e for s, e in got.items()}
        return done

    async def _land(self, flying: _InFlight) -> tuple[bool, bool]:
        """Wait for a commit sent by `_flow`: (its batch was handled, the commit was made
        as prepared). Not made, the batch is dealt with as `_process` would (handled
        anew, or left for a retry), and the batch prepared after it must be dropped."""
        try:
            failures = await flying.commit
            made = failures is not None
            if failures is None:  # another writer moved a story on: anew, as `handle` does
                failures = await self.handler.handle(flying.todo)
        except Exception as exc:
            self._unhandled(exc, flying.batches, len(flying.todo))
            return False, False
        await self._failures(flying.batches, flying.todo, failures)
        return True, made

    def _read_again(self, batches: dict[int, groups.Entries]) -> None:
        """These entries were read and not handled: read them again from the pending
        list (a partition waiting for a retry does so at its time)."""
        for n in batches:
            if n in self.owned and self.owned[n].drain_from is None:
                self.owned[n].drain_from = "0"

    def _leases_due(self) -> bool:
        return time.monotonic() - self._leases_checked >= self._lease_check_s

    def _unhandled(self, exc: Exception, batches: dict[int, groups.Entries], entries: int) -> None:
        """The handler failed on a whole batch: infrastructure, not the updates. All of
        them are retried later."""
        where = {"partitions": list(batches), "entries": entries}
        if isinstance(exc, NotReplicated):  # written, maybe for good: sent again later
            log.warning("replicas did not confirm in time; will retry it", **where, error=str(exc))
        elif isinstance(exc, AppendFunctionMissing | LogMoving):  # nothing written: ops
            log.error("cannot append; will retry it", **where, error=str(exc))
        elif isinstance(exc, UNREACHABLE):  # an outage: expected, one line
            log.warning(f"{outage(exc)} mid-batch; will retry it", **where, error=described(exc))
        elif refused := write_refusal(exc):  # out of memory or disk, too few replicas
            log.error(
                "a server refuses writes; will retry the batch",
                **where,
                refusal=refused,
                error=str(exc),
            )
        elif isinstance(exc, StoreBehind):  # a crash of the handler's store: resumed
            log.warning("the handler's store lost writes; resuming", **where, error=str(exc))
        else:
            log.error(
                "handler failed; will retry the batch",
                **where,
                exc_info=exc,
            )
        self._forget_delivered()
        self._resume = True
        for n in batches:
            if n in self.owned:
                self._retry_later(self.owned[n])

    async def _failures(
        self,
        batches: dict[int, groups.Entries],
        todo: list[Delivery],
        failures: dict[str, BaseException],
    ) -> None:
        for n in batches:
            mine = {ref: exc for ref, exc in failures.items() if ref.startswith(f"{n}:")}
            if mine:
                await self._failed(self.owned[n], [d for d in todo if d.partition == n], mine)

    async def _failed(
        self, p: _Partition, todo: list[Delivery], failures: dict[str, BaseException]
    ) -> None:
        for ref, exc in sorted(failures.items(), key=lambda kv: stream_id(kv[0].split(":")[1])):
            d = next(x for x in todo if x.ref == ref)
            if d.key in p.blocked:
                continue
            attempts = await self.dead.failed(d)
            trace = "".join(traceback.format_exception(exc))
            log.error(
                "update failed",
                story=d.key,
                position=f"{d.partition}:{d.entry_id}",
                stream=d.stream,
                attempt=attempts,
                error=described(exc),
            )
            if attempts < self.config.max_attempts:
                p.blocked.add(d.key)
                self._retry_later(p)
                continue
            later = [
                x for x in todo if x.key == d.key and stream_id(x.entry_id) > stream_id(d.entry_id)
            ]
            await self._park(
                [Parking(d, described(exc), trace)]
                + [
                    Parking(x, "parked behind an earlier update of this story", "", d.ref)
                    for x in later
                ]
            )
            log.error(
                "story parked",
                story=d.key,
                position=f"{d.partition}:{d.entry_id}",
                stream=d.stream,
                behind=len(later),
            )

    async def _park(self, parkings: list[Parking]) -> None:
        if not parkings:
            return
        await self.dead.park(parkings)
        PARKED.labels(self.config.group).inc(len(parkings))
        await self.handler.settle({p.delivery.partition: p.delivery.stream for p in parkings})

    def _retry_later(self, p: _Partition) -> None:
        p.drain_from = "0"
        p.retry_at = time.monotonic() + self.config.retry_delay_s

    def _key(self, fields: dict[bytes, bytes]) -> str:
        try:
            return self.key_of(fields.get(b"__data__", b""))
        except Exception:
            return ""
