"""Moving a log to another server, a cluster, or another partition count (`dateline migrate`).

The steps, in order:
1. **Freeze.** Every partition's marker (the hash the append script reads, beside where
   the partition is sealed from) gets a `moving` field: the script refuses the
   partition from then on (`RELOCATED`), so feeds get a 503 and retry, and nothing is
   appended that the copy would miss. Readers go on reading. (In the marker, not a key
   of its own: the appending users may read it already, so no ACL file changes.)
2. **Copy.** The partition streams are read in one merge by stream id (the time each
   update was recorded), each record opened (a sealed one checked and its seal taken
   off), its `position` rewritten to where it lands, and written to the target's
   partition of its story: the stream entry under the same millisecond (so its
   `recordedtime` stays true), the story's list (so versions stay what they were), and
   the dedup entry (so a feed's retry of an old update is still a duplicate). Feed,
   reader and subscription settings are copied too.
3. **Check.** Each story's count and a digest of its records (positions aside) on the
   target against the source's; the stream, dedup and list counts against each other.
4. **Seal** the target where there is a key and the target has functions: the copy
   wrote its stories' lists sealed already (`seal.sealing_key`), and the check found
   each record's seal, so the partitions are only marked (`seal_log`'s `listed`).
5. **Switch.** The markers say the log has moved, and where: services still pointed
   at the source keep answering 503 until they are restarted on the target.

A failed copy or check lifts the freeze (the source takes appends again) and leaves the
target as it is, to be cleared before another try.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, cast

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from dateline.store.connection import sent_by_slot, sent_whole
from dateline.store.layout import (
    DELIVER_GROUP,
    Keys,
    dedup_field,
    feed_tokens_key,
    feeds_key,
    inbox_key,
    reader_tokens_key,
    readers_key,
    rejected_key,
    subscription_secrets_key,
    subscriptions_key,
)
from dateline.store.seal import Sealing, Unsealed, opened, seal

PAGE = 1000
"""Stream entries read a call, and records written a pipeline."""


class TargetNotEmpty(RuntimeError):
    """The target already holds a log under this prefix: migrate copies into an empty one."""


class _Stored(msgspec.Struct):
    subject: str
    source: str
    id: str
    version: int


_stored = msgspec.json.Decoder(_Stored).decode
_POSITION = b',"position":"'


def subject_of(record: bytes) -> str:
    """The story a record of the log belongs to."""
    return _stored(record).subject


def moved_record(record: bytes, position: str) -> bytes:
    """`record` with its `position` member (the last but one the log adds) set anew."""
    head, found, tail = record.rpartition(_POSITION)
    if not found:
        raise ValueError("a log record without a position")
    return head + _POSITION + position.encode() + tail[tail.index(b'"') :]


def without_position(record: bytes) -> bytes:
    """What the copy's check compares: the record, its position aside."""
    return moved_record(record, "")


@dataclass
class StoryCheck:
    count: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def add(self, record: bytes) -> None:
        self.count += 1
        self.digest.update(hashlib.sha256(without_position(record)).digest())


@dataclass
class MigrateReport:
    updates: int
    stories: int
    partitions: tuple[int, int]
    seconds: float = 0.0
    mismatched: list[str] = field(default_factory=list)
    sealed: bool = False
    settings: int = 0
    """Feeds, readers and subscriptions copied (their hashes' fields)."""
    delivery: bool = False
    """The source fans out to subscribers: the target's fan-out starts after the copy."""
    queued: int = 0
    """Updates the subscriptions were owed, put in their outboxes on the target."""
    parked: int = 0
    """Their dead letters, put in theirs on the target."""
    gone: list[str] = field(default_factory=list)
    """Subscriptions owed updates and removed before their settings were copied."""


def frozen_detail(to: str) -> str:
    """What feeds are told while the log is copied: it reads after "The log"."""
    return (
        f"is being moved to {to} (dateline migrate, since {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}); "
        "appends are refused until it is done"
    )


def moved_detail(to: str) -> str:
    """What feeds are told once the log has moved."""
    return (
        f"has moved to {to} (dateline migrate, {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}): "
        "restart this service with REDIS_URL pointing there"
    )


async def freeze(client: aioredis.Redis, keys: Keys, detail: str, to: str) -> None:
    """Refuse appends on every partition from now on (step 1); `detail` is what feeds read."""
    pipe = client.pipeline(transaction=False)
    for p in range(keys.partitions):
        pipe.hset(keys.seal(p), mapping={"moving": detail, "moving_to": to})
    await pipe.execute()


async def release(client: aioredis.Redis, keys: Keys) -> int:
    """Lift a freeze: the partitions take appends again. How many were frozen. (The
    fields only: the rest of the marker says where the partition is sealed from.)"""
    pipe = client.pipeline(transaction=False)
    for p in range(keys.partitions):
        pipe.hdel(keys.seal(p), "moving", "moving_to")
    return sum(1 for n in await pipe.execute() if n)


async def frozen_to(client: aioredis.Redis, keys: Keys) -> str | None:
    """Where a freeze (or a finished move) says the log goes, if anywhere: any partition
    (a run stopped while it froze them leaves some)."""
    pipe = client.pipeline(transaction=False)
    for p in range(keys.partitions):
        pipe.hget(keys.seal(p), "moving_to")
    for found in await pipe.execute():
        if found is not None:
            return found.decode() if isinstance(found, bytes) else str(found)
    return None


async def check_empty(client: aioredis.Redis, keys: Keys, streams: Iterable[str] = ()) -> None:
    """`TargetNotEmpty` unless the target holds no log under this prefix, nor any of
    `streams`: those the copy writes entry for entry under their own ids (`copied_streams`),
    which a stream there already past them would refuse part way through the copy."""
    held = await client.exists(keys.config, *keys.logs())
    if held:
        raise TargetNotEmpty(
            f"the target already holds a log under the prefix {keys.prefix!r} (its config "
            "or partition streams): a log is copied only into an empty one. Delete that "
            "prefix's keys there (stop its services first), or choose another target"
        )
    found = [stream for stream in streams if await client.exists(stream)]
    if found:
        raise TargetNotEmpty(
            f"the target already holds {', '.join(found)}: streams the copy writes entry "
            "for entry under their ids, and one there already would stop it part way "
            "(feeds or a validator pointed there before the move write them). Delete them "
            "there (stop what writes them first), or choose another target"
        )


def copied_streams(prefix: str, feeds: Iterable[str], rejected: bool) -> list[str]:
    """The streams a copy writes entry for entry: these feeds' Redis inboxes, and the
    validator's refusals (`rejected`) where the copy carries them (a move does, a backup
    does not)."""
    inboxes = [inbox_key(prefix, feed) for feed in sorted(feeds)]
    return [rejected_key(prefix), *inboxes] if rejected else inboxes


async def feed_names(client: aioredis.Redis, prefix: str) -> list[str]:
    """The feeds this log knows, whose inboxes a move copies."""
    return sorted(f.decode() for f in cast(list[bytes], await client.hkeys(feeds_key(prefix))))


async def _entries(
    client: aioredis.Redis, keys: Keys, partition: int, until: str = "+"
) -> AsyncIterator[tuple[int, int, bytes]]:
    """A partition's stream entries in order, up to `until`, as (ms, seq, record), page by
    page."""
    start = "-"
    while True:
        rows = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await client.xrange(keys.log(partition), min=start, max=until, count=PAGE),
        )
        for eid, fields in rows:
            ms, seq = eid.decode().split("-")
            yield int(ms), int(seq), fields[b"__data__"]
        if len(rows) < PAGE:
            return
        start = "(" + rows[-1][0].decode()


async def cut(client: aioredis.Redis, keys: Keys) -> dict[int, str]:
    """Each partition's last stream id now ("0-0" for an empty one): reading up to these
    takes a log as it stood, while appends go on. Each story lives in one partition, so
    each story's history is whole up to some version."""
    pipe = client.pipeline(transaction=False)
    for p in range(keys.partitions):
        pipe.xrevrange(keys.log(p), count=1)
    last = cast(list[list[tuple[bytes, Any]]], await pipe.execute())
    return {p: rows[0][0].decode() if rows else "0-0" for p, rows in enumerate(last)}


async def _merged(
    client: aioredis.Redis, keys: Keys, until: dict[int, str] | None = None
) -> AsyncIterator[tuple[int, int, int, bytes]]:
    """Every partition's entries (up to `until`'s ids) in one order, by stream id:
    (ms, seq, partition, record)."""
    parts = range(keys.partitions)
    streams = [_entries(client, keys, p, until[p] if until else "+") for p in parts]
    heads: list[tuple[int, int, int, bytes]] = []
    for p, stream in enumerate(streams):
        if until is not None and until[p] == "0-0":
            continue
        if (first := await anext(stream, None)) is not None:
            heads.append((first[0], first[1], p, first[2]))
    heapq.heapify(heads)
    while heads:
        ms, seq, p, raw = heads[0]
        yield ms, seq, p, raw
        if (after := await anext(streams[p], None)) is not None:
            heapq.heapreplace(heads, (after[0], after[1], p, after[2]))
        else:
            heapq.heappop(heads)


async def opened_records(
    client: aioredis.Redis,
    sealing: Sealing,
    until: dict[int, str] | None = None,
    refused: list[str] | None = None,
) -> AsyncIterator[tuple[int, int, int, bytes]]:
    """`_merged`, each record opened (a sealed one checked, its seal taken off). A record
    the seal refuses raises `Unsealed`; or, given `refused`, is left out and its position
    added there (logged): an entry written around the append function, which no reader
    takes for an update."""
    await sealing.refresh(client, force=True)
    async for ms, seq, partition, raw in _merged(client, sealing.keys, until):
        eid = f"{ms}-{seq}"
        if refused is None:
            yield ms, seq, partition, sealing.entry(partition, eid, raw)
        elif (record := sealing.entry_or_none(partition, eid, raw)) is not None:
            yield ms, seq, partition, record
        else:
            refused.append(f"{partition}:{eid}")


class _Writer:
    """Writes records to the target, `PAGE` at a time: on one server a transaction in
    one round trip, which writes nothing until its `EXEC` runs it in one event-loop
    turn, so a target under `appendfsync always` fsyncs once a page rather than once for
    each 16 KB of it that it reads (`connection.sent_whole` says more). On a cluster, a
    transaction a partition (its keys share a slot), side by side
    (`connection.sent_whole`). The commands go as they are, without a pipeline
    object: its reply callbacks and timers took two thirds of a restore's time."""

    def __init__(self, client: aioredis.Redis, keys: Keys, key: bytes | None) -> None:
        self.client, self.keys, self.key = client, keys, key
        self.last: dict[int, tuple[int, int]] = {}
        self.commands: list[tuple[str | bytes, ...]] = []
        self.listed: dict[str, list[bytes]] = {}
        """A page's records by story list, in order."""
        self.dedup: dict[str, list[str]] = {}
        """A page's dedup fields and values by partition."""
        self.queued = 0

    def place(self, partition: int, ms: int, seq: int) -> str:
        """The stream id an entry recorded at `ms` gets in `partition`: its own where it
        is free, else the next one in the same millisecond (the time stays true)."""
        last = self.last.get(partition)
        if last is not None and (ms, seq) <= last:  # the merge is by id: ms == last[0]
            ms, seq = last[0], last[1] + 1
        self.last[partition] = (ms, seq)
        return f"{ms}-{seq}"

    async def write(self, record: bytes, stored: _Stored, partition: int, eid: str) -> None:
        position = f"{partition}:{eid}"
        moved = moved_record(record, position)
        keys = self.keys
        # The list's record sealed as `seal_log` would seal it after (its stream entry,
        # at or before the partition's marker, stays as it is), so that it need not.
        listed = moved if self.key is None else seal(self.key, moved)
        self.commands.append(("XADD", keys.log(partition), eid, "__data__", moved))
        self.listed.setdefault(keys.story(stored.subject, partition), []).append(listed)
        self.dedup.setdefault(keys.ids(partition), []).extend(
            (dedup_field(stored.source, stored.id), f"{stored.version} {position} {stored.subject}")
        )
        self.queued += 1
        if self.queued >= PAGE:
            await self.flush()

    async def flush(self) -> None:
        """The page: its stream entries in order, then a story's records of it in one
        `RPUSH` and a partition's dedup entries in one `HSET` (a third of the commands
        there were, one of each a record, for the same writes in the same transaction)."""
        if self.queued:
            page = self.commands
            page += [("RPUSH", key, *records) for key, records in self.listed.items()]
            page += [("HSET", key, *fields) for key, fields in self.dedup.items()]
            await sent_whole(self.client, page)
            self.commands, self.listed, self.dedup = [], {}, {}
            self.queued = 0


SETTINGS = {
    "feeds": feeds_key,
    "feed_tokens": feed_tokens_key,
    "readers": readers_key,
    "reader_tokens": reader_tokens_key,
    "subscriptions": subscriptions_key,
    "subscription_secrets": subscription_secrets_key,
}
"""The settings hashes that go with a log, by the name a backup gives each."""


async def setting_hashes(source: aioredis.Redis, prefix: str) -> dict[str, dict[bytes, bytes]]:
    """Feeds, readers and subscriptions (their signing secrets too): each hash that holds
    any, by its name in `SETTINGS`."""
    found = {name: await source.hgetall(key_of(prefix)) for name, key_of in SETTINGS.items()}
    return {name: cast(dict[bytes, bytes], held) for name, held in found.items() if held}


async def write_settings(
    target: aioredis.Redis, prefix: str, hashes: dict[str, dict[bytes, bytes]]
) -> int:
    """`setting_hashes` written under `prefix`: how many fields."""
    for name, held in hashes.items():
        await target.hset(SETTINGS[name](prefix), mapping=held)  # type: ignore[arg-type]  # bytes
    return sum(len(held) for held in hashes.values())


InboxRows = list[tuple[bytes, dict[bytes, bytes]]]


async def inbox_pages(source: aioredis.Redis, prefix: str) -> AsyncIterator[tuple[str, InboxRows]]:
    """Each feed's Redis inbox, a page of entries at a time: (feed, entries)."""
    for feed in await feed_names(source, prefix):
        async for rows in _pages(source, inbox_key(prefix, feed)):
            yield feed, rows


async def _pages(source: aioredis.Redis, stream: str) -> AsyncIterator[InboxRows]:
    start = "-"
    while rows := cast(InboxRows, await source.xrange(stream, min=start, count=PAGE)):
        yield rows
        start = "(" + rows[-1][0].decode()


async def write_inbox(target: aioredis.Redis, prefix: str, feed: str, rows: InboxRows) -> None:
    """Entries of a feed's inbox, each under its own id."""
    await _write_entries(target, inbox_key(prefix, feed), rows)


async def _write_entries(target: aioredis.Redis, stream: str, rows: InboxRows) -> None:
    pipe = target.pipeline(transaction=False)
    for eid, fields in rows:
        pipe.xadd(stream, fields, id=eid)  # type: ignore[arg-type]  # bytes
    await pipe.execute()


async def copy_settings(source: aioredis.Redis, target: aioredis.Redis, prefix: str) -> int:
    """Feeds, readers and subscriptions (their signing secrets too, so subscribers'
    checks still pass), so the target's services know them; and the feeds' Redis
    inboxes, entry for entry: the target's validator reads them from the start, and what
    the source's had validated comes back as duplicates. And what the validator refused
    (`rejected`, under the same ids), so that `dateline feeds refused` on the target
    still tells the feeds why: the inboxes hold no entry it refused, so nothing is
    refused twice. What each subscription is owed moves by `owed`, not here."""
    copied = await write_settings(target, prefix, await setting_hashes(source, prefix))
    async for feed, rows in inbox_pages(source, prefix):
        await write_inbox(target, prefix, feed, rows)
    async for rows in _pages(source, rejected_key(prefix)):
        await _write_entries(target, rejected_key(prefix), rows)
    return copied


async def fans_out(client: aioredis.Redis, keys: Keys) -> bool:
    """Whether this log is fanned out to subscribers (`dateline deliver` has a group)."""
    groups = [g for p in range(keys.partitions) for g in await _groups(client, keys.log(p))]
    return any(_name(g) == DELIVER_GROUP for g in groups)


async def start_delivery_after(target: aioredis.Redis, to: Keys) -> None:
    """The target's fan-out starts after what it holds: from 0, a delivery service there
    would send every subscriber the whole log again."""
    for p in range(to.partitions):
        try:
            await target.xgroup_create(to.log(p), DELIVER_GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


async def place_delivery(
    source: aioredis.Redis, from_: Keys, target: aioredis.Redis, to: Keys
) -> bool:
    """Where the source fans the log out to subscribers, start the target's fan-out after
    the copied history (`start_delivery_after`). Whether there was one."""
    if not await fans_out(source, from_):
        return False
    await start_delivery_after(target, to)
    return True


async def _groups(client: aioredis.Redis, stream: str) -> list[dict[str, Any]]:
    try:
        return await client.xinfo_groups(stream)
    except ResponseError:  # no such stream
        return []


def _name(group: dict[str, Any]) -> str:
    found = group.get("name", b"")
    return found.decode() if isinstance(found, bytes) else str(found)


async def copy_log(
    source: aioredis.Redis,
    sealing: Sealing,
    target: aioredis.Redis,
    to: Keys,
    *,
    progress: Callable[[int], None] | None = None,
    positions: IO[str] | None = None,
    seal_key: bytes | None = None,
    placed: Callable[[int, tuple[int, int], str, bytes], None] | None = None,
) -> dict[str, StoryCheck]:
    """Copy every record (step 2); each story's count and digest, for `check`.
    `placed`: as `write_log`'s."""
    records = opened_records(source, sealing)
    return await write_log(
        records,
        target,
        to,
        progress=progress,
        positions=positions,
        seal_key=seal_key,
        placed=placed,
    )


async def write_log(
    records: AsyncIterator[tuple[int, int, int, bytes]],
    target: aioredis.Redis,
    to: Keys,
    *,
    progress: Callable[[int], None] | None = None,
    positions: IO[str] | None = None,
    seal_key: bytes | None = None,
    placed: Callable[[int, tuple[int, int], str, bytes], None] | None = None,
) -> dict[str, StoryCheck]:
    """Write opened records, in stream-id order as (ms, seq, partition, record), each to
    its story's partition under `to`; each story's count and digest, for `check`. With
    `seal_key`, the stories' lists are written sealed (`seal_log`'s `listed`), where
    the target has the sealing function (`seal.sealing_key`). `placed` is told where
    each record was (partition, stream id) and is now (its position), with the record."""
    writer = _Writer(target, to, seal_key)
    checks: dict[str, StoryCheck] = {}
    done = 0
    async for ms, seq, partition, record in records:
        stored = _stored(record)
        lands = to.partition(stored.subject)
        eid = writer.place(lands, ms, seq)
        await writer.write(record, stored, lands, eid)
        checks.setdefault(stored.subject, StoryCheck()).add(record)
        if positions is not None:
            positions.write(f"{partition}:{ms}-{seq}\t{lands}:{eid}\n")
        if placed is not None:
            placed(partition, (ms, seq), f"{lands}:{eid}", record)
        done += 1
        if progress is not None and done % PAGE == 0:
            progress(PAGE)
    await writer.flush()
    if progress is not None and done % PAGE:
        progress(done % PAGE)
    return checks


async def check(
    target: aioredis.Redis,
    to: Keys,
    checks: dict[str, StoryCheck],
    *,
    seal_key: bytes | None = None,
) -> list[str]:
    """What differs between the copy and the source (step 3): an empty list when nothing.
    With `seal_key` (the copy's `write_log` was given it), each list record must carry
    its seal under that key."""
    wrong: list[str] = []
    async for story, listed in _lists(target, to, checks):
        want, got = checks[story], StoryCheck()
        if seal_key is not None and (problem := _opened_all(seal_key, listed)):
            wrong.append(f"{story}: {problem}")
            continue
        for record in listed:
            got.add(record)
        if got.count != want.count:
            wrong.append(f"{story}: {got.count} updates on the target, {want.count} here")
        elif got.digest.digest() != want.digest.digest():
            wrong.append(f"{story}: its records differ")
    total = sum(c.count for c in checks.values())
    streamed = sum([int(await target.xlen(to.log(p))) for p in range(to.partitions)])
    deduped = sum([int(await target.hlen(to.ids(p))) for p in range(to.partitions)])
    if not total == streamed == deduped:
        wrong.append(
            f"the target holds {streamed} stream entries and {deduped} dedup entries "
            f"for {total} updates"
        )
    return wrong


async def _lists(
    target: aioredis.Redis, to: Keys, checks: dict[str, StoryCheck]
) -> AsyncIterator[tuple[str, list[bytes]]]:
    """Each story's list on the target, with about `PAGE` records' worth of stories a
    round trip rather than one a story (10,000 stories: 10,000 round trips in turn); on
    a cluster, each partition's stories of a page on its slot's node, side by side."""
    page: list[str] = []
    held = 0
    for story, want in checks.items():
        page.append(story)
        held += want.count
        if held >= PAGE:
            for found in (await _page_of_lists(target, to, page)).items():
                yield found
            page, held = [], 0
    for found in (await _page_of_lists(target, to, page)).items():
        yield found


async def _page_of_lists(
    target: aioredis.Redis, to: Keys, stories: list[str]
) -> dict[str, list[bytes]]:
    """`stories`' lists in one round trip (on a cluster, one a partition, side by side)."""
    if not stories:
        return {}
    got = await sent_by_slot(target, [("LRANGE", to.story(s), 0, -1) for s in stories])
    return dict(zip(stories, cast(list[list[bytes]], got), strict=True))


def _opened_all(key: bytes, records: list[bytes]) -> str | None:
    """Opens each sealed record in place; what is wrong with the first that fails."""
    for i, record in enumerate(records):
        try:
            found = opened(key, record)
        except Unsealed as exc:
            return f"its record {i + 1}: {exc}"
        if found is None:
            return f"its record {i + 1} carries no seal"
        records[i] = found
    return None
