"""Consumer-group commands, wrapped for the things FastStream's defaults get wrong."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from dateline.store.connection import in_turn, is_cluster

Entries = list[tuple[str, dict[bytes, bytes]]]


async def ensure_group(client: aioredis.Redis, stream: str, group: str) -> None:
    """Create the group at 0, so updates appended before it existed are delivered too."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def last_delivered(client: aioredis.Redis, stream: str, group: str) -> str | None:
    """The group's last-delivered id in `stream` (`XINFO GROUPS`); None if it delivered
    nothing, or there is no such group."""
    for info in await client.xinfo_groups(stream):
        name = info["name"]
        if (name.decode() if isinstance(name, bytes) else str(name)) == group:
            last = info["last-delivered-id"]
            last = last.decode() if isinstance(last, bytes) else str(last)
            return None if last == "0-0" else last
    return None


async def read(
    client: aioredis.Redis,
    group: str,
    consumer: str,
    streams: dict[str, str],
    count: int,
    block_ms: int | None,
) -> dict[str, Entries]:
    """XREADGROUP: id "0" re-reads this consumer's pending entries, ">" reads new ones."""
    reply = await client.xreadgroup(group, consumer, streams, count=count, block=block_ms)  # type: ignore[arg-type]
    return _entries(reply)


async def read_and_get(
    client: aioredis.Redis,
    group: str,
    consumer: str,
    reads: list[tuple[dict[str, str], int]],
    block_ms: int | None,
    hash_key: str,
    before: Sequence[tuple[str | int, ...]] = (),
) -> tuple[dict[str, Entries], dict[str, str]]:
    """`read` of each `(streams, count)`, and the hash at `hash_key` as it is right after
    them, in one round trip. Only a single read may block. `before`: commands sent ahead
    of the reads, in the same round trip, their replies dropped (one server only).

    On a cluster every stream is a slot of its own: a read each (COUNT is a stream's, so
    this reads what one read of them all would), sent to their nodes side by side, none
    blocking; then the hash, which a pipeline over nodes could read first."""
    if block_ms is not None and len(reads) > 1:
        raise ValueError("one blocking read at a time: a second would wait behind the first")
    cluster = is_cluster(client)
    if cluster:
        if block_ms is not None:
            raise ValueError("no blocking read on a cluster: a read names one slot's streams")
        reads = [
            ({stream: start}, count)
            for streams, count in reads
            for stream, start in streams.items()
        ]
    if before and cluster:
        raise ValueError("no commands ahead of a read on a cluster: they name other slots")
    if not cluster:  # the projector's every cycle: no pipeline machinery (`in_turn`)
        *raw, found = await in_turn(
            client,
            *before,
            *(_xreadgroup(group, consumer, streams, count, block_ms) for streams, count in reads),
            ("HGETALL", hash_key),
        )
        raw = raw[len(before) :]
        out = {stream: e for reply in raw for stream, e in _raw_entries(reply).items()}
        return out, {k.decode(): v.decode() for k, v in _pairs(found)}
    pipe = client.pipeline(transaction=False)
    for streams, count in reads:
        pipe.xreadgroup(group, consumer, streams, count=count, block=block_ms)  # type: ignore[arg-type]
    replies = await pipe.execute()
    found = await client.hgetall(hash_key)
    out = {}
    for reply in replies:
        out.update(_entries(reply))
    return out, {k.decode(): v.decode() for k, v in cast(dict[bytes, bytes], found).items()}


def _xreadgroup(
    group: str, consumer: str, streams: dict[str, str], count: int, block_ms: int | None
) -> tuple[str | int, ...]:
    block: tuple[str | int, ...] = () if block_ms is None else ("BLOCK", block_ms)
    return (
        "XREADGROUP", "GROUP", group, consumer, "COUNT", count, *block,
        "STREAMS", *streams, *streams.values(),
    )  # fmt: skip


def _pairs(reply: Any) -> list[tuple[bytes, bytes]]:
    """A hash as the server sent it: a map (RESP3) or a flat list (RESP2)."""
    if isinstance(reply, dict):
        return list(reply.items())
    return list(zip(reply[::2], reply[1::2], strict=True))


def _raw_entries(reply: Any) -> dict[str, Entries]:
    """`_entries` of a group read as the server sent it: streams as a map (RESP3) or a
    list of pairs (RESP2), fields as flat lists; an entry deleted while pending has none."""
    out: dict[str, Entries] = {}
    for stream, entries in reply.items() if isinstance(reply, dict) else reply or []:
        # A log entry has one field (`__data__`), a flat list: its dict made at once,
        # 0.1 us against 1 through `_pairs`, an update read. Any other shape (a map, more
        # fields) goes through `_pairs`.
        kept = [
            (eid.decode(), {f[0]: f[1]} if type(f) is list and len(f) == 2 else dict(_pairs(f)))
            for eid, f in entries
            if f is not None
        ]
        if kept:
            out[stream.decode()] = kept
    return out


def _entries(reply: Any) -> dict[str, Entries]:
    out: dict[str, Entries] = {}
    for stream, entries in cast(list[tuple[bytes, list[Any]]], reply or []):
        kept = [(eid.decode(), fields) for eid, fields in entries if fields is not None]
        if kept:
            out[stream.decode()] = kept
    return out


async def claim_all(client: aioredis.Redis, stream: str, group: str, consumer: str) -> int:
    """Move every pending entry of `stream` to `consumer` (after taking over its partition)."""
    moved, cursor = 0, "0-0"
    while True:
        # Not JUSTID: redis-py then returns the ids alone and drops the cursor.
        reply: list[Any] = await client.xautoclaim(
            stream, group, consumer, min_idle_time=0, start_id=cursor, count=1000
        )
        cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        moved += len(reply[1])
        if cursor == "0-0":
            return moved


async def pending_count(client: aioredis.Redis, stream: str, group: str) -> int:
    try:
        info = await client.xpending(stream, group)
    except ResponseError:
        return 0
    return int(info["pending"])
