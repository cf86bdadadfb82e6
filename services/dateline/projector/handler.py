"""The projector's handler: read a batch's states, plan, commit. Nothing else.

Exactly once: a story's state carries the version it has applied, so a
redelivered update (version <= state.version) is acknowledged and not applied
again; the states, the checkpoint and the acknowledgements go in one script.

What each story of a batch becomes is the plan's (`plan.py`, pure); what is
written, acknowledged and kept is the commit's (`commit.py`). The handler keeps the
states it writes, from the moment a batch is prepared (a batch prepared while the
last commit is on the wire folds from them: `Runner._flow`), and forgets them if
that commit is not made. What it kept is fenced: if another writer (a `dateline
replay --story`, a projector that took the partition over) moved a story on, the
commit writes nothing, and the handler forgets those stories, reads them again and
plans the batch anew.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

import redis.asyncio as aioredis
import structlog
from redis.exceptions import NoScriptError

from dateline.domain import advance_in_place, fork, project
from dateline.domain.positions import stream_id
from dateline.projector.commit import (
    WARM_PARTS,
    Carry,
    Delivered,
    Held,
    Kept,
    Tally,
    acks,
    apart,
    checkpoint_args,
    declared,
    decoded,
    fence,
    named,
    page_of,
    script_args,
)
from dateline.projector.commit import kept as kept_states
from dateline.projector.plan import (
    Advance,
    Project,
    StoryPlan,
    as_stored,
    failures,
    plan,
    refold,
)
from dateline.projector.warmth import FOUND, KEEP_SETTING, Warmth
from dateline.runtime import Delivery
from dateline.runtime.groups import last_delivered
from dateline.runtime.metrics import BATCH_SECONDS, DROPPED, PROJECTED, STATES
from dateline.runtime.runner import StoreBehind
from dateline.store import functions, scripts
from dateline.store.connection import in_turn, is_cluster, sent
from dateline.store.doorbell import bell
from dateline.store.log import Log
from dateline.store.readmodels import RECALL, Change, Command, ReadModels
from dateline.store.together import gathered

T = TypeVar("T")
logger = structlog.get_logger("dateline.projector")
CONFLICT_RETRIES = 3
"""Fold a batch anew this often when another writer moved one of its stories on."""


ACK_EVERY_S = 0.05
"""Apart: how often a read carries the acknowledgements owed to the log (`owed`)."""

CYCLE_BYTES = 2**19
MIN_CYCLE = 25
STATE_BYTES_WEIGHT = 0.2


@dataclass
class Prepared:
    """A batch ready to commit (`ProjectorHandler.prepare`)."""

    stories: list[str]
    calls: list[tuple[list[str], list[str | bytes | float]]]
    """The commit script's calls: one, or a partition's each on a cluster."""
    failures: dict[str, BaseException]
    acked: int
    started: float
    xacks: list[Command] = field(default_factory=list)
    """With the read models apart from the log: the log's XACKs, owed once it lands."""
    written: dict[int, str] = field(default_factory=dict)
    """... the checkpoints it writes, by partition."""
    unsettled: dict[int, str] = field(default_factory=dict)
    """... the partitions whose checkpoint the log must say, once it lands."""
    named: dict[int, str] = field(default_factory=dict)
    """... the stories it wrote, by partition (`commit.named`), for those checkpoints' rings."""
    carries: dict[int, Carry] = field(default_factory=dict)
    """... where it leaves each checkpoint it writes, for the next commit's page there."""


def _unknown(partition: int) -> None:
    return None


class StoryMovedOn(Exception):
    """Another writer kept changing a batch's stories; the runner retries it later."""


class ViewsBehind(StoreBehind):
    """The store of read models is behind a checkpoint it had answered for: it lost its
    last writes (a crash under `everysec`). The runner resumes from where it is."""


class ProjectorHandler:
    def __init__(
        self,
        client: aioredis.Redis,
        log: Log,
        models: ReadModels,
        group: str,
        advance_fn: Advance = advance_in_place,
        project_fn: Project = project,
        views: aioredis.Redis | None = None,
        kept: Kept | None = None,
    ) -> None:
        """`views`: the store of read models, if apart from the log's server (`client`,
        which the log's own reads and writes use). `kept`: the states it keeps between
        batches, as the operator bounded them (`commit.kept`)."""
        self.client, self.log, self.models, self.group = client, log, models, group
        self.views = client if views is None else views
        self.apart = self.views is not client
        """Read models, checkpoints and doorbell in a store of their own: a commit writes
        them there, then owes the log its acknowledgements (`owed`)."""
        self.sharded = is_cluster(self.views)
        """The read models on a cluster (the log's: a store of their own is one server),
        each partition's in its slot: a commit a partition."""
        self._owed: list[Command] = []
        self._owed_since = 0.0
        self.ack_every_s = ACK_EVERY_S
        self.landed: dict[int, str] = {}
        """Apart: the last checkpoint of each partition seen written to the store."""
        self.advance, self.project = advance_fn, project_fn
        self.refolds = self.conflicts = 0
        self.kept = kept if kept is not None else kept_states()
        """Story -> its state as this handler last read or wrote it (msgpack), and its fence."""
        self.warmth = Warmth()
        self._dropped = 0
        """`kept.dropped` when last counted."""
        self._states = {found: STATES.labels(found) for found in FOUND}
        self.state_bytes = 0.0
        """Packed state bytes a cycle's update touches, on average of the last cycles."""
        self.delivered: Delivered = _unknown
        """How far the group delivered each partition, as its runner knows it
        (`Runner.delivered`, set by `create_app` on one server): else the commit asks."""
        self.tally: Tally = _unknown
        """This process's hold on each partition and the entries read under it
        (`Runner.tally`, set with `delivered`): without it, no commit carries a page."""
        self.carry: dict[int, Carry] = {}
        """Where this process's last commit that landed left each checkpoint, for the
        next commit's page there (`commit.page_of`)."""
        self._commit = scripts.bound(self.views, "commit")
        self._settle = scripts.bound(client, "settle")
        self._settled = scripts.bound(client, "settled")
        self._acked = scripts.bound(client, "acked")
        self._read = scripts.Script(self.views, RECALL)

    async def handle(self, deliveries: list[Delivery]) -> dict[str, BaseException]:
        if not deliveries:
            return {}
        for _ in range(CONFLICT_RETRIES):
            done = await self.commit(await self.prepare(deliveries))
            if done is not None:
                return done
        stories = sorted({d.key for d in deliveries})
        raise StoryMovedOn(f"stories of this batch kept changing: {stories[:5]}")

    async def prepare(self, deliveries: list[Delivery]) -> Prepared:
        """Read, plan and build a batch's commit, sending nothing. Its states are kept as
        if written: a batch prepared while this one's commit is on the wire folds from
        them. If the commit is not made (`commit` says so), they are forgotten."""
        started = time.perf_counter()
        by_story: dict[str, list[Delivery]] = {}
        for d in deliveries:
            by_story.setdefault(d.key, []).append(d)
        try:
            return await self._prepare(by_story, started)
        except BaseException:  # what it kept may be half a batch's: read them again
            self.kept.forget(list(by_story))
            raise

    async def commit(self, prepared: Prepared) -> dict[str, BaseException] | None:
        """Send a prepared batch's commit: the entries that failed (as `handle`), or None
        if another writer moved one of its stories on (nothing of that call written; its
        stories forgotten, to be read and folded anew)."""
        try:
            if len(prepared.calls) == 1:  # one server: no task to gather
                written = [await self._call(*prepared.calls[0])]
            else:
                written = await gathered(*(self._call(keys, args) for keys, args in prepared.calls))
        except BaseException:  # whether it was written is unknown: read them again
            self.forget(prepared)
            self.carry.clear()
            raise
        if -1 in written:
            self.forget(prepared)
            self.landed.clear()
            self.carry.clear()
            raise ViewsBehind(
                "the store of read models is behind a checkpoint it answered for: it lost "
                "its last writes; resuming from where it is"
            )
        if any(written):
            # Nothing of that call was written; what the others wrote (a cluster's other
            # partitions) is applied and acknowledged, and a fold anew acknowledges it
            # again without applying it.
            self.forget(prepared)
            self.conflicts += 1
            return None
        for partition in prepared.unsettled:  # applied there, its checkpoint not moved
            self.carry.pop(partition, None)
        self.carry.update(prepared.carries)
        if self.apart:
            if not self._owed:
                self._owed_since = time.monotonic()
            self._owed += prepared.xacks
            self.landed.update(prepared.written)
            if prepared.unsettled:
                await self.settle(prepared.unsettled, prepared.named)
        PROJECTED.inc(prepared.acked)
        BATCH_SECONDS.observe(time.perf_counter() - prepared.started)
        return prepared.failures

    async def _call(self, keys: list[str], args: list[str | bytes | float]) -> object:
        """One call of the commit script. On one server its EVALSHA is sent as the
        runner's reads are (`in_turn`), not through redis-py's command machinery
        (retries, timers, reply callbacks), and by its text if the server lost it
        (`scripts.Script`); on a cluster, through the script object, whose client finds
        the slot's node."""
        if self.sharded:
            return await self._commit(keys=keys, args=args)
        try:
            [written] = await in_turn(
                self.views, ("EVALSHA", self._commit.sha, len(keys), *keys, *args)
            )
        except NoScriptError:  # a restarted or flushed server: nothing was written
            [written] = await in_turn(
                self.views, ("EVAL", self._commit.text, len(keys), *keys, *args)
            )
        return written

    def forget(self, prepared: Prepared) -> None:
        """A prepared batch is not committed: its states are read again when next met."""
        self.kept.forget(prepared.stories)

    async def _prepare(self, by_story: dict[str, list[Delivery]], started: float) -> Prepared:
        sealing = self.log.sealing
        await sealing.refresh(self.log.redis)
        known = await self._recall(list(by_story))
        # What the cycle decodes: a warm state is decoded already.
        touched = sum(len(s) for s, _ in known.values() if isinstance(s, bytes))
        entries = max(1, sum(len(items) for items in by_story.values()))
        self.state_bytes += (touched / entries - self.state_bytes) * STATE_BYTES_WEIGHT

        def sealed(d: Delivery) -> bytes:
            return sealing.entry(d.partition, d.entry_id, d.raw)

        opened = as_stored if sealing.key is None else sealed  # no key: no seal to open

        plans = []
        for story, items in by_story.items():
            old = decoded(known[story][0])  # decoded at most once: the fold forks it
            plans.append(plan(story, old, fork(old), items, self.advance, opened))
        await self._refold([p for p in plans if p.refold_to])
        acked = sum(len(p.acked) for p in plans)
        prepared = Prepared(list(by_story), [], failures(plans), acked, started)
        if not acked:
            return prepared
        fences = {story: sha for story, (_, sha) in known.items()}
        # On a cluster a commit a partition, each in its slot, side by side; else one.
        for some in self._parts(plans, lambda p: p.story):
            writes = self.models.commands(
                [Change(p.old, p.state, p.refolded, p.journal) for p in some if p.changed]
            )
            done = [d for p in some for d in p.acked]
            names = named(writes.states, self.log.keys.partition)
            paged = functools.partial(self._page, writes.index, opened)
            if self.apart:
                prepared.named = names
                failed = {int(ref.split(":", 1)[0]) for ref in prepared.failures}
                expects, moves, prepared.xacks, prepared.written, prepared.unsettled = apart(
                    self.models,
                    self.group,
                    done,
                    self.bell,
                    self.delivered,
                    failed,
                    self.landed,
                    names,
                    paged,
                )
                ends = prepared.written
                commands = expects + writes.commands + moves
            else:
                commands = writes.commands + acks(
                    self.models, self.group, done, self.bell, self.delivered, names, paged
                )
                # Where each checkpoint lands if it moves as far as the runner was
                # delivered; if it stops short, the next page's start is refused.
                partitions = {d.partition for d in done}
                ends = {p: upto for p in partitions if (upto := self.delivered(p))}
            prepared.carries |= {
                p: Carry(*tally, upto)
                for p, upto in ends.items()
                if (tally := self.tally(p)) is not None
            }
            keys = [self.models.story(p.story) for p in some]
            marks: list[str] = []
            if self.sharded:
                keys, marks = declared(keys, commands)
            args = script_args([*(fences[p.story] for p in some), *marks], commands)
            prepared.calls.append((keys, args))
            for p in some:
                if p.changed:
                    p.state.timeline = []  # the stored state holds none: a list of its own
                    self.kept.keep(p.story, p.state, fence(writes.states[p.story]))
        return prepared

    def _page(
        self,
        index: dict[str, bytes],
        opened: Callable[[Delivery], bytes],
        partition: int,
        upto: str,
        some: list[Delivery],
    ) -> tuple[str, bytes] | None:
        """The page a commit's checkpoint carries in a partition (`commit.page_of`)."""
        since, tally = self.carry.get(partition), self.tally(partition)
        return page_of(self.models.version, partition, upto, some, since, tally, index, opened)

    def _parts(self, items: list[T], story: Callable[[T], str]) -> list[list[T]]:
        """`items` as one call sends them: all together on one server, a partition's
        apart on a cluster (its keys are one slot)."""
        if not self.sharded:
            return [items]
        parts: dict[int, list[T]] = {}
        for item in items:
            parts.setdefault(self.log.keys.partition(story(item)), []).append(item)
        return list(parts.values())

    def cycle(self, batch: int) -> int:
        """Updates the next cycle may read: `CYCLE_BYTES` of packed states at most (at
        least `MIN_CYCLE` updates). A cycle's states are all in memory at once, decoded
        (the warm ones, `Kept`, are decoded already and not counted), and they grow
        with their stories: with a fixed count, every catch-up after a stall of the
        server set a new high-water mark of the projector's memory as the soak's stories
        grew. Smaller cycles were faster too: catching up 200,000 updates over 2,000
        stories, 2,049/s at 1,000 a cycle, 1,941 at 4 MiB, 2,939 at 1 MiB, 3,097 at 512
        KiB, 3,079 at 256 KiB; over 10,000 stories, 3,136, 3,044, -, 4,523, 4,677/s."""
        if self.state_bytes <= 0:
            return batch
        return max(MIN_CYCLE, min(batch, int(CYCLE_BYTES / self.state_bytes)))

    def bell(self, partition: int) -> tuple[str, str]:
        """How a commit rings partition N's doorbell (`commit.Bell`)."""
        return bell(self.sharded, self.log.keys, partition)

    def owed(self, force: bool = True) -> list[Command]:
        """Apart: the acknowledgements of what landed in the store of read models, which
        the log has not been sent yet; the runner's next call there carries them (no
        round trip of their own). Lost with a crash, their entries stay pending, are
        read again, and are acknowledged then without being applied twice.

        Not `force`d (a read's), none until the oldest has waited `ack_every_s`: each
        call that acknowledges is a write the log's server fsyncs under `always`, 117 us
        of its CPU, and a read sent behind it waits for that fsync when it finds entries."""
        if not self._owed or (not force and time.monotonic() < self._owed_since + self.ack_every_s):
            return []
        owed, self._owed = self._owed, []
        return owed

    async def pay(self) -> None:
        """Send the log what it is owed (`owed`), now (on a cluster, to each slot's node)."""
        if owed := self.owed():
            await sent(self.client, owed)

    async def resume(self, streams: dict[int, str]) -> None:
        """Apart: a partition just taken, or held through a failure, whose store of read
        models may be behind the log (it lost its last writes, or it is new): move the
        group back to the store's checkpoint (`XGROUP SETID`), so that reads deliver what
        the store lacks again. What it holds already is acknowledged, not applied twice
        (each story's state has the version it applied). Only for partitions whose lease
        this process holds: no other reader moves their group meanwhile."""
        if not self.apart or not streams:
            return
        await self.pay()
        lost = False
        for n, stream in sorted(streams.items()):
            checkpoints = self.models.region(n).checkpoint
            mark = await self.views.hget(checkpoints, str(n))
            at = None if mark is None else cast(bytes, mark).decode()
            delivered = await last_delivered(self.client, stream, self.group)
            behind = delivered is not None and (at is None or stream_id(at) < stream_id(delivered))
            if at is None:
                self.landed.pop(n, None)
            else:
                self.landed[n] = at
            if not behind:
                continue
            await self.client.xgroup_setid(stream, self.group, at or "0")
            self.kept.clear()  # what it kept may be ahead of the store: read it again
            lost = True
            logger.warning(
                "the store of read models is behind the log; reading again from its checkpoint",
                partition=n,
                checkpoint=at,
                delivered=delivered,
            )
        if lost:
            await self._restamp()

    async def _restamp(self) -> None:
        """What a projector writes to the store when it starts, written again: a store
        that lost writes may have lost them too (within its last second, or all: a new,
        empty store in place of the old). The version's shape, which readers go by (with
        none and a checkpoint, they read it as the first shape), and the read library,
        which the query's user may not load (`deploy/views.acl`). Both only if missing."""
        await self.views.set(self.models.shape, self.models.built, nx=True)
        await functions.load(self.views)

    async def behind(self) -> bool:
        """Apart: is the store of read models behind a checkpoint it answered for?"""
        if not self.apart or not self.landed:
            return False
        landed = sorted(self.landed.items())
        found = await in_turn(
            self.views,
            *(("HGET", self.models.region(n).checkpoint, str(n)) for n, _ in landed),
        )
        return any(
            at is None or stream_id(at.decode()) < stream_id(last)
            for (_, last), at in zip(landed, found, strict=True)
        )

    async def settle(self, streams: dict[int, str], names: dict[int, str] | None = None) -> None:
        """The runner parked entries of these partitions (`{partition: stream}`), or a
        commit apart could not say how far they are settled: move their checkpoints past
        what is settled now, as a commit would; their rings name `names[partition]`."""
        if self.apart:
            parts = sorted(streams)
            got = await self._settled_upto([streams[n] for n in parts])
            moves: list[Command] = [
                (
                    "CHECKPOINT",
                    self.models.region(n).checkpoint,
                    str(n),
                    upto.decode(),
                    *self.bell(n),
                    (names or {}).get(n, ""),
                )
                for n, upto in zip(parts, got, strict=True)
                if upto
            ]
            if moves:
                await self._commit(keys=[], args=script_args([], moves))
                self.landed.update({int(m[2]): str(m[3]) for m in moves})
            return
        if self.log.cluster:  # a call a partition: its checkpoint and stream share a slot
            await gathered(
                *(
                    self._settle(
                        keys=[stream],
                        args=checkpoint_args(self.models, self.group, n, stream, self.bell),
                    )
                    for n, stream in streams.items()
                )
            )
            return
        args = [
            a
            for partition, stream in sorted(streams.items())
            for a in checkpoint_args(self.models, self.group, partition, stream, self.bell)
        ]
        await self._settle(args=args)

    async def _settled_upto(self, streams: list[str]) -> list[bytes | None]:
        """What the log is owed (`owed`) sent, then how far each stream is settled for the
        group, as the log says: on one server, the XACKs then `settled.lua` for all; on a
        cluster, a call a stream in its slot, side by side, that acknowledges its entries
        and says how far (`acked.lua`): one round trip a commit, not two."""
        if not self.log.cluster:
            await self.pay()
            got = await self._settled(args=[a for s in streams for a in (s, self.group, "")])
            return cast(list[bytes | None], got)
        ids: dict[str, list[str | bytes | float]] = {s: [] for s in streams}
        others: list[Command] = []
        for command in self.owed():
            _, stream, _, *acked = command
            if stream in ids:
                ids[stream] += acked
            else:
                others.append(command)
        if others:
            await sent(self.client, others)
        replies = await gathered(
            *(self._acked(keys=[s], args=[self.group, *ids[s]]) for s in streams)
        )
        return cast(list[bytes | None], replies)

    async def _recall(self, stories: list[str]) -> dict[str, tuple[Held, str]]:
        """Each story's state and fence: kept, or read in one round trip."""
        known: dict[str, tuple[Held, str]] = {}
        missing: list[str] = []
        packed = 0
        for story in stories:
            if (found := self.kept.get(story)) is None:
                missing.append(story)
            else:
                known[story] = found
                packed += isinstance(found[0], bytes)
        self._found(len(known) - packed, packed, len(missing))
        if not missing:
            return known
        groups = self._parts(missing, lambda story: story)  # a read a slot on a cluster
        read = await gathered(*(self._read(keys=self.models.recall_keys(some)) for some in groups))
        pairs = [
            pair
            for some, replies in zip(groups, read, strict=True)
            for pair in zip(some, replies, strict=True)
        ]
        for story, reply in pairs:
            state, raw = self.models.decode_recalled(story, reply)
            known[story] = state, fence(raw)
            self.kept.keep(story, *known[story])
        return known

    def _found(self, warm: int, packed: int, read: int) -> None:
        for found, n in zip(FOUND, (warm, packed, read), strict=True):
            if n:
                self._states[found].inc(n)
        kept = self.kept
        dropped, self._dropped = kept.dropped - self._dropped, kept.dropped
        if dropped > 0:
            DROPPED.inc(dropped)
        for setting, said in self.warmth.found(warm, packed, read, time.monotonic(), dropped):
            if setting == KEEP_SETTING:
                logger.warning(
                    "story states read from the store again each batch: the projector keeps "
                    "too few for the stories in play; raise DATELINE_PROJECTOR_KEEP_MB",
                    keep_mb=round(kept.max_bytes / 2**20, 1),
                    kept_stories=len(kept),
                    **said,
                )
            else:
                logger.warning(
                    "story states decoded again each batch: the warm tier is too small for "
                    "the stories in play; raise DATELINE_PROJECTOR_WARM_MB",
                    warm_mb=round(kept.warm_parts * 64 / WARM_PARTS, 1),
                    warm_stories=len(kept.warm),
                    **said,
                )

    def _open_history(self, story: str, records: list[bytes]) -> list[bytes]:
        return self.log.sealing.listed_all(self.log.keys.partition(story), records)

    async def _refold(self, plans: list[StoryPlan]) -> None:
        """Refold the stories that need it, their histories fetched in one round trip."""
        if not plans:
            return
        histories = cast(
            list[list[bytes]],
            await sent(
                self.log.redis,
                [("LRANGE", self.log.keys.story(p.story), 0, p.refold_to - 1) for p in plans],
            ),
        )
        for p, history in zip(plans, histories, strict=True):
            self.refolds += 1
            refold(p, history, self.project, self._open_history)
