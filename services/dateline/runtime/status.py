"""Where the projection stands: the full report a person asks for, and the cheap gauges
a scraper reads.

`report` is what `dateline status` and `GET /v1/status` show: per partition its
length, checkpoint, lag, pending entries and lease holder; the live processes; the
parked stories; the projection versions and a rebuild's progress. It SCANs the
keyspace: a person's question, not a scraper's. `gauges` is what `/metrics` reads at
each scrape: one pipeline of small commands whatever the lag. Both tell a partition's
lag from the same reads (`partition_reads`, one pipeline for all partitions): the
group's own count where the server keeps one, else the entries read (`lag_read`).
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple, cast

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from dateline.domain.positions import BadPosition, Position, stream_id
from dateline.runtime.leases import Leases
from dateline.runtime.metrics import (
    AOF_BYTES,
    AOF_REWRITING,
    AOF_WRITE_FAILED,
    BACKUP_LAST,
    DELIVERY_BACKLOG,
    DELIVERY_LAG_SECONDS,
    DELIVERY_MISSED,
    DELIVERY_PARKED,
    DISK_KNOWN,
    FANOUT_PARKED,
    LAG_SECONDS,
    LAG_UPDATES,
    MEMORY_BYTES,
    PARKED_NOW,
    PENDING,
    SERVER_REACHABLE,
)
from dateline.store import migrate
from dateline.store.backup import Taken, taken_of
from dateline.store.deadletters import DeadLetters
from dateline.store.disk import Disk, disks
from dateline.store.layout import (
    DELIVER_GROUP,
    Keys,
    backup_key,
    checkpoints_pattern,
    version_of_checkpoint,
)
from dateline.store.readmodels import SHAPE, ReadModels, read_active, read_checkpoints
from dateline.store.replies import as_text_or_none
from dateline.store.subscriptions import Subscriptions

SHOW_PARKED = 100
"""Parked stories `report` names; it counts all of them."""
LAG_SCAN = 10_000
"""Entries a partition `report` reads past the checkpoint to count the lag."""


class PartitionStatus(msgspec.Struct):
    partition: int
    length: int
    checkpoint: str | None
    lag: int
    lag_seconds: float
    pending: int
    lease: str | None
    sealed_after: str | None = None
    """The stream id after which the partition's records must be sealed; None: not
    sealed (`dateline.store.seal`)."""
    lag_exact: bool = True
    """False: `lag` is a floor, the entries read to count it (`LAG_SCAN`), where the
    server does not count them (Redis 6.2)."""


class ParkedStory(msgspec.Struct):
    story: str
    parked_at: str


class DeadLetterStatus(msgspec.Struct):
    parked_stories: int
    parked_updates: int
    stories: list[ParkedStory]
    """The first `SHOW_PARKED` by name, each with the update that parked it: for a page."""


class ProjectionStatus(msgspec.Struct):
    active: str | None
    versions: list[str]
    shapes: dict[str, int]
    """What each version's read models hold (`readmodels.SHAPE`); 1 if never stamped."""
    current: int = SHAPE
    """The shape this release builds: an active version below it lacks what this
    release's readers would read (until `dateline replay stories`)."""


class SubscriptionStatus(msgspec.Struct):
    """One subscription's delivery state (`dateline subscriptions list`, the ops page)."""

    name: str
    url: str
    mode: str
    story_prefixes: list[str]
    types: list[str]
    paused: bool
    backlog: int
    """Updates in its outbox: not yet acknowledged by the receiver, nor parked."""
    lag_seconds: float
    """Age of the oldest of them (since it was appended to the log)."""
    retrying: int
    """Updates that failed and wait for their next attempt."""
    parked: int
    delivered: int
    failed_attempts: int
    last_status: int | None
    last_error: str | None
    last_delivered: float | None
    last_failed: float | None
    held: int = 0
    """Updates the fan-out parked (`dateline dlq list --group deliver`) before they
    reached this outbox: `dateline dlq redrive STORY --group deliver` adds them."""


class DeliveryStatus(msgspec.Struct):
    fanout_lag: int | None
    """Log entries the delivery service has not yet put in the outboxes (None: the
    server does not count them, before Redis 7, or the service never ran)."""
    subscriptions: list[SubscriptionStatus]
    fanout_parked: int = 0
    """Updates the fan-out parked (its group's dead letters, `dateline dlq list --group
    deliver`); each subscription that missed them counts them in its `held`."""
    moving_to: str | None = None
    """Where `dateline migrate` is moving the log, or moved it: the delivery service
    holds every send here meanwhile, and after (`deliver/app.py`)."""
    processes: list[str] = msgspec.field(default_factory=list)
    """The delivery service's process that sends (`delivering`): none, and nothing is
    sent, whatever the subscriptions' states say."""
    standbys: list[str] = msgspec.field(default_factory=list)
    """Its other live processes, waiting to take over when the one that sends stops (by
    the group's heartbeats: a process whose user may not write them is not named)."""


class Status(msgspec.Struct):
    group: str
    partitions: list[PartitionStatus]
    processes: list[str]
    """The live processes sharing the partitions, by the names their leases carry."""
    dead_letters: DeadLetterStatus
    projection: ProjectionStatus
    replay: dict[str, str] | None = None
    """A rebuild's progress (`dateline replay`), while one runs and an hour after."""
    deliveries: DeliveryStatus | None = None
    """Subscriptions and how their deliveries stand (`dateline deliver`)."""
    moving: str | None = None
    """Set while the log is being moved to another server, or once it has moved
    (`dateline migrate`): what feeds are told. Appends are refused meanwhile."""
    disks: list[Disk] = msgspec.field(default_factory=list)
    """Each primary's AOF and the stalls its latency monitor logged (`store/disk.py`)."""
    backup: Taken | None = None
    """The last `dateline backup` of the log: when it began, what it holds, its file."""


async def report(
    client: aioredis.Redis,
    keys: Keys,
    models: ReadModels,
    views: aioredis.Redis | None = None,
) -> Status:
    """`views`: the store of read models, if apart from the log's server (`client`)."""
    views = client if views is None else views
    now_ms = time.time() * 1000
    group = models.group
    checkpoints = await read_checkpoints(views, models)
    leases = Leases(client, keys.group(group), owner="", ttl_ms=0)  # read only
    holders = await leases.holders(keys.partitions)
    pipe = client.pipeline(transaction=False)
    for p in range(keys.partitions):
        pipe.hmget(keys.seal(p), ["from", "moving"])
    markers = cast(list[list[bytes | None]], await pipe.execute())
    sealed = [found for found, _ in markers]
    moving = next((m for _, m in markers if m is not None), None)  # a partial freeze too
    rows = []
    reads = await partition_reads(client, keys, group, checkpoints)
    for p, (read, (lag, exact)) in enumerate(
        zip(reads, await lags(client, keys, reads, checkpoints), strict=True)
    ):
        cp = checkpoints.get(p)
        rows.append(
            PartitionStatus(
                partition=p,
                length=read.length,
                checkpoint=cp,
                lag=lag,
                lag_seconds=read.waited_s(now_ms),
                pending=read.pending,
                lease=holders[p],
                sealed_after=as_text_or_none(sealed[p]),
                lag_exact=exact,
            )
        )
    dead = DeadLetters(client, keys.prefix, group)
    parked, counts = await dead.parked(), await dead.counts()
    found = views.scan_iter(match=checkpoints_pattern(keys.prefix), count=1000)
    versions = sorted({version_of_checkpoint(keys.prefix, k.decode()) async for k in found})
    shapes = [await views.get(keys.models(v).shape) for v in versions]
    replay = cast(dict[bytes, bytes], await views.hgetall(keys.replay))
    return Status(
        group=group,
        partitions=rows,
        processes=await leases.alive(),
        dead_letters=DeadLetterStatus(
            parked_stories=counts["parked_stories"],
            parked_updates=counts["parked_updates"],
            stories=[ParkedStory(s, p) for s, p in sorted(parked.items())[:SHOW_PARKED]],
        ),
        projection=ProjectionStatus(
            active=await read_active(views, keys.prefix),
            versions=versions,
            shapes={v: int(s or 1) for v, s in zip(versions, shapes, strict=True)},
        ),
        replay={k.decode(): v.decode() for k, v in replay.items()} or None,
        deliveries=await deliveries(client, keys),
        moving=as_text_or_none(moving),
        disks=await disks(client) + (await disks(views) if views is not client else []),
        backup=taken_of(cast(bytes | None, await client.get(backup_key(keys.prefix)))),
    )


async def deliveries(client: aioredis.Redis, keys: Keys) -> DeliveryStatus:
    """Every subscription's delivery state, and the fan-out's lag: one pipeline."""
    now_ms = time.time() * 1000
    registry = Subscriptions(client, keys)
    subs = await registry.all()
    pipe = client.pipeline(transaction=False)
    for sub in subs:
        state = registry.state(sub.name)
        pipe.xlen(state.outbox)
        pipe.xrange(state.outbox, count=1)
        pipe.hlen(state.retries)
        pipe.xlen(state.dlq)
        pipe.hgetall(state.stats)
        pipe.hlen(state.held)
    for p in range(keys.partitions):
        pipe.xinfo_groups(keys.log(p))
    replies = await pipe.execute(raise_on_error=False)
    rows = []
    for n, sub in enumerate(subs):
        backlog, first, retrying, parked, raw, held = replies[6 * n : 6 * n + 6]
        stats = {k.decode(): v.decode() for k, v in raw.items()}
        oldest = _log_ms(first[0][1].get(b"position", b"")) if first else None
        rows.append(
            SubscriptionStatus(
                name=sub.name,
                url=sub.url,
                mode=sub.mode,
                story_prefixes=sub.story_prefixes,
                types=sub.types,
                paused=sub.paused,
                backlog=int(backlog),
                lag_seconds=round((now_ms - oldest) / 1000, 1) if oldest else 0.0,
                retrying=int(retrying),
                parked=int(parked),
                delivered=int(stats.get("delivered", 0)),
                failed_attempts=int(stats.get("failed_attempts", 0)),
                last_status=int(stats["last_status"]) if "last_status" in stats else None,
                last_error=stats.get("last_error"),
                last_delivered=float(stats["last_delivered"])
                if "last_delivered" in stats
                else None,
                last_failed=float(stats["last_failed"]) if "last_failed" in stats else None,
                held=int(held),
            )
        )
    lag: int | None = 0
    for infos in replies[6 * len(subs) :]:
        info = {} if isinstance(infos, ResponseError) else _group(infos, DELIVER_GROUP)
        if not info or info.get("lag") is None:
            lag = None
            break
        lag = (lag or 0) + int(info["lag"]) + int(info.get("pending") or 0)
    fanned = await DeadLetters(client, keys.prefix, DELIVER_GROUP).counts()
    moving_to = await migrate.frozen_to(client, keys)
    alive = await delivering(client, keys)
    lease = Leases(client, keys.group(DELIVER_GROUP), owner="", ttl_ms=0)
    standbys = [m for m in await lease.alive() if m not in alive]
    return DeliveryStatus(lag, rows, int(fanned["parked_updates"]), moving_to, alive, standbys)


async def delivering(client: aioredis.Redis, keys: Keys) -> list[str]:
    """The delivery service's process that reads the log now, if one does: the holder of
    its group's one lease (`kit.py`; another process waits on standby until it runs
    out). Not the group's heartbeats, which name the standbys too, and a process whose
    user may not write them (an ACL older than `deploy/users.acl`'s) not at all."""
    lease = Leases(client, keys.group(DELIVER_GROUP), owner="", ttl_ms=0, names=["all"])
    return [held for held in await lease.holders(1) if held]


def _log_ms(position: bytes) -> int | None:
    """The time in a log position `<partition>:<ms>-<seq>`."""
    try:
        return Position.parse(position.decode()).id[0]
    except (BadPosition, UnicodeDecodeError):
        return None


_SUBSCRIBED: set[str] = set()
_PER_SUBSCRIPTION = (DELIVERY_BACKLOG, DELIVERY_LAG_SECONDS, DELIVERY_PARKED, DELIVERY_MISSED)
"""The subscriptions whose gauges `record_deliveries` set last."""


def record_deliveries(found: DeliveryStatus) -> None:
    """Set the subscriptions' gauges, read at scrape time; a subscription removed since
    the last scrape loses its series (else its last lag stood, and its alert with it)."""
    now = {row.name for row in found.subscriptions}
    for gone in _SUBSCRIBED - now:
        for gauge in _PER_SUBSCRIPTION:
            gauge.remove(gone)
    _SUBSCRIBED.clear()
    _SUBSCRIBED.update(now)
    for row in found.subscriptions:
        DELIVERY_BACKLOG.labels(row.name).set(row.backlog)
        DELIVERY_LAG_SECONDS.labels(row.name).set(row.lag_seconds)
        DELIVERY_PARKED.labels(row.name).set(row.parked)
        DELIVERY_MISSED.labels(row.name).set(row.held)
    FANOUT_PARKED.set(found.fanout_parked)


class PartitionGauges(msgspec.Struct):
    partition: int
    lag: int | None
    """Entries past the checkpoint: the group's undelivered entries and its pending ones
    (None where the server does not count them: Redis before 7)."""
    lag_seconds: float
    """Age of the oldest entry past the checkpoint."""
    pending: int


class Gauges(msgspec.Struct):
    partitions: list[PartitionGauges]
    parked_updates: int
    backup_at: float = 0.0
    """When the last backup began (Unix seconds); 0 for none recorded."""


async def gauges(
    client: aioredis.Redis,
    keys: Keys,
    models: ReadModels,
    views: aioredis.Redis | None = None,
) -> Gauges:
    """The lag, pending and parked gauges, in one pipeline of small commands (and a read
    of the checkpoints in `views`, the store of read models, if apart from `client`)."""
    now_ms = time.time() * 1000
    checkpoints = await read_checkpoints(client if views is None else views, models)
    pipe = client.pipeline(transaction=False)
    pipe.get(backup_key(keys.prefix))
    pipe.xlen(keys.group(models.group).dlq)
    _ask(pipe, keys, models.group, checkpoints)
    replies = await pipe.execute(raise_on_error=False)
    taken, parked = replies[:2]
    reads = _reads(replies, keys, models.group, checkpoints)
    rows = [
        PartitionGauges(
            partition=p,
            lag=lag_counted(read, checkpoints.get(p)),
            lag_seconds=read.waited_s(now_ms),
            pending=read.pending,
        )
        for p, read in enumerate(reads)
    ]
    last = taken_of(taken) if isinstance(taken, bytes) else None
    return Gauges(
        rows, int(parked) if isinstance(parked, int) else 0, last.at if last is not None else 0.0
    )


class PartitionRead(NamedTuple):
    """What a partition's lag is told from (`partition_reads`)."""

    oldest_ms: int | None
    """When the oldest entry past the checkpoint was appended; None: there is none."""
    length: int
    group: dict[str, Any]
    """The group's entry in `XINFO GROUPS` ({} for none)."""
    applied: int
    """Pending entries at or before the checkpoint, up to `APPLIED_SCAN`: applied, their
    `XACK` not sent yet (between a commit and the log's acknowledgement, or a crash
    there), so not behind."""

    @property
    def pending(self) -> int:
        return int(self.group.get("pending") or 0)

    def waited_s(self, now_ms: float) -> float:
        return round((now_ms - self.oldest_ms) / 1000, 1) if self.oldest_ms else 0.0


APPLIED_SCAN = 1_000
"""Pending entries at or before its checkpoint a partition's read counts: a batch's,
normally. Past it, the lag is read from the entries (`lag_read`)."""


async def partition_reads(
    client: aioredis.Redis, keys: Keys, group: str, checkpoints: dict[int, str]
) -> list[PartitionRead]:
    """Each partition's `PartitionRead`, in one pipeline of a few small commands a
    partition, whatever the lag."""
    pipe = client.pipeline(transaction=False)
    _ask(pipe, keys, group, checkpoints)
    return _reads(await pipe.execute(raise_on_error=False), keys, group, checkpoints)


def _ask(pipe: Any, keys: Keys, group: str, checkpoints: dict[int, str]) -> None:
    """`partition_reads`' commands, queued on `pipe` (after any of the caller's)."""
    for p in range(keys.partitions):
        stream, cp = keys.log(p), checkpoints.get(p)
        pipe.xrange(stream, min=f"({cp}" if cp else "-", count=1)
        pipe.xlen(stream)
        pipe.xinfo_groups(stream)
        if cp:
            pipe.xpending_range(stream, group, min="-", max=cp, count=APPLIED_SCAN)


def _reads(
    replies: list[Any], keys: Keys, group: str, checkpoints: dict[int, str]
) -> list[PartitionRead]:
    """`_ask`'s replies, the last of `replies`, as a `PartitionRead` a partition."""
    asked = sum(4 if checkpoints.get(p) else 3 for p in range(keys.partitions))
    found = iter(replies[len(replies) - asked :])
    reads = []
    for p in range(keys.partitions):
        first, length, infos = next(found), next(found), next(found)
        applied = next(found) if checkpoints.get(p) else []
        reads.append(
            PartitionRead(
                oldest_ms=stream_id(first[0][0].decode())[0] if first else None,
                length=length if isinstance(length, int) else 0,
                group={} if isinstance(infos, ResponseError) else _group(infos, group),
                applied=len(applied) if isinstance(applied, list) else 0,
            )
        )
    return reads


def lag_counted(read: PartitionRead, checkpoint: str | None) -> int | None:
    """Entries of the partition past `checkpoint`, by the group's own count of its
    undelivered entries (Valkey, Redis 7+) and its pending ones, less those applied;
    None where the server keeps no count (Redis 6.2), lost it (the group's last id set by
    hand), or counts from behind the checkpoint, or where more pending entries were
    applied than `APPLIED_SCAN`: then `lag_read` tells it."""
    if read.oldest_ms is None:
        return 0
    behind, delivered = read.group.get("lag"), read.group.get("last-delivered-id")
    if behind is None or read.applied >= APPLIED_SCAN:
        return None
    if checkpoint is not None and stream_id(as_text_or_none(delivered) or "0-0") < stream_id(
        checkpoint
    ):
        return None
    return int(behind) + read.pending - read.applied


async def lag_read(client: aioredis.Redis, stream: str, checkpoint: str | None) -> tuple[int, bool]:
    """The entries of `stream` past `checkpoint`, read, up to `LAG_SCAN`; and whether that
    is their count (False: at least that many). Where `lag_counted` cannot tell: 0.26 s
    of this process for a lag of 80,000 over 8 partitions, and 10,000 a partition said
    however far behind."""
    after = f"({checkpoint}" if checkpoint else "-"
    found = len(cast(list[Any], await client.xrange(stream, min=after, count=LAG_SCAN)))
    return found, found < LAG_SCAN


async def lags(
    client: aioredis.Redis, keys: Keys, reads: list[PartitionRead], checkpoints: dict[int, str]
) -> list[tuple[int, bool]]:
    """Each partition's lag and whether it is exact: counted (`lag_counted`), else read
    (`lag_read`), as `report` tells it."""
    found = []
    for p, read in enumerate(reads):
        cp = checkpoints.get(p)
        lag = lag_counted(read, cp)
        found.append((lag, True) if lag is not None else await lag_read(client, keys.log(p), cp))
    return found


class LagPoint(msgspec.Struct):
    """The projection's lag at one moment, as the operations page charts it."""

    at: float
    """Unix seconds, by the clock of the process that read it."""
    appended: int
    """The partitions' lengths, summed: what a later point's is compared with."""
    lag: int
    exact: bool
    """False: `lag` is a floor somewhere (`PartitionStatus.lag_exact`)."""
    partitions: list[tuple[str | None, int]]
    """Each partition's checkpoint and lag: a partition behind whose checkpoint stands
    still is named."""


async def lag_point(
    client: aioredis.Redis,
    keys: Keys,
    models: ReadModels,
    views: aioredis.Redis | None = None,
) -> LagPoint:
    """The lag now, told as `report` tells it, without the rest of the report."""
    at = time.time()
    checkpoints = await read_checkpoints(client if views is None else views, models)
    reads = await partition_reads(client, keys, models.group, checkpoints)
    told = await lags(client, keys, reads, checkpoints)
    return LagPoint(
        at=at,
        appended=sum(r.length for r in reads),
        lag=sum(lag for lag, _ in told),
        exact=all(exact for _, exact in told),
        partitions=[(checkpoints.get(p), lag) for p, (lag, _) in enumerate(told)],
    )


def _group(infos: list[dict[str, Any]], group: str) -> dict[str, Any]:
    for info in infos:
        name = info.get("name")
        if (name.decode() if isinstance(name, bytes) else name) == group:
            return info
    return {}


def record_disks(found: list[Disk]) -> None:
    """Set the disk gauges from `store.disk.disks`, read at scrape time. A server that
    could not be asked has its AOF series taken away, not left at what it last said:
    on-call would read a server that refuses writes as one that writes. Its
    `dateline_server_disk_known` says 0; a server with no AOF has no AOF series."""
    for disk in found:
        SERVER_REACHABLE.labels(disk.server).set(int(not disk.unreachable))
        DISK_KNOWN.labels(disk.server).set(int(disk.problem is None))
        if disk.problem is not None:
            _forget_disk(disk.server)
            continue
        MEMORY_BYTES.labels(disk.server, "used").set(disk.used_bytes or 0)
        MEMORY_BYTES.labels(disk.server, "max").set(disk.max_bytes or 0)
        if not disk.aof:
            _forget_disk(disk.server, memory=False)
            continue
        AOF_BYTES.labels(disk.server, "current").set(disk.aof_bytes or 0)
        AOF_BYTES.labels(disk.server, "rewritten").set(disk.rewritten_bytes or 0)
        AOF_REWRITING.labels(disk.server).set(int(disk.rewriting))
        AOF_WRITE_FAILED.labels(disk.server).set(int(disk.last_write == "err"))


def _forget_disk(server: str, *, memory: bool = True) -> None:
    gone = [
        (AOF_BYTES, (server, "current")),
        (AOF_BYTES, (server, "rewritten")),
        (AOF_REWRITING, (server,)),
        (AOF_WRITE_FAILED, (server,)),
    ]
    if memory:
        gone += [(MEMORY_BYTES, (server, "used")), (MEMORY_BYTES, (server, "max"))]
    for gauge, labels in gone:
        gauge.remove(*labels)  # one never set: nothing to take away, no error


def forget_gauges() -> None:
    """The gauges `record` and `record_deliveries` set, as unknown: for a scrape that
    could not read them (the log's server unreachable). Labelled series are taken away,
    the others NaN: what they last said would stand for now, and its alerts with it."""
    per_label = (LAG_UPDATES, LAG_SECONDS, PENDING)
    for gauge in (*per_label, *_PER_SUBSCRIPTION):
        gauge.clear()
    _SUBSCRIBED.clear()
    for single in (PARKED_NOW, BACKUP_LAST, FANOUT_PARKED):
        single.set(math.nan)


def record(found: Gauges) -> None:
    """Set the Prometheus gauges from `gauges`, read at scrape time."""
    for row in found.partitions:
        p = str(row.partition)
        if row.lag is not None:
            LAG_UPDATES.labels(p).set(row.lag)
        else:  # not told this scrape: the last figure would stand for now
            LAG_UPDATES.remove(p)
        LAG_SECONDS.labels(p).set(row.lag_seconds)
        PENDING.labels(p).set(row.pending)
    PARKED_NOW.set(found.parked_updates)
    BACKUP_LAST.set(found.backup_at)
