"""Poison updates: counted failures, then parked with the error, in order, per story.

Per consumer group (one group per projection version; `store/layout.py`, `GroupKeys`):
failures so far by entry, the parked stories with the entry that parked each, and a
stream with one entry per parked update.
Parking acknowledges the update in its partition stream in the same transaction,
so it is in exactly one place: pending there, or parked here.

After the fix, ops redrive a story: the projector's by rebuilding it from the log
(`projector/ops.py`), a kit app's by asking it to handle the story's dead letters
again, in order (`ask_redrive`; the kit serves it, `dateline.kit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis

from dateline.domain.positions import stream_id
from dateline.store.connection import is_cluster
from dateline.store.layout import GroupKeys

REDRIVE_ASKED = "asked"
"""A redrive's state until the group's consumer serves it (`DeadLetters.ask_redrive`)."""


class Delivery(msgspec.Struct, frozen=True, gc=False):
    """One entry of a partition stream, handed to a handler.

    A Struct, not a frozen dataclass: one is made an update read, and a frozen
    dataclass's `__init__` sets each field through `object.__setattr__` (1 us against
    0.08): the projector's instructions an update fell by 4%."""

    partition: int
    stream: str
    entry_id: str
    key: str  # the story id; "" if the entry could not be read
    raw: bytes

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.entry_id}"


@dataclass(frozen=True, slots=True)
class Letter:
    """A parked update, as its dead letters hold it (one, or more after a crash)."""

    ids: tuple[str, ...]
    """Its dead letters' ids in the group's dead-letter stream."""
    partition: int
    entry_id: str
    story: str
    record: bytes
    """As the log stores it: a sealed log's seal still on it."""

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.entry_id}"


@dataclass(frozen=True, slots=True)
class Parking:
    delivery: Delivery
    error: str
    traceback: str
    behind: str = ""  # the entry of the same story parked first, if this one waits behind it


class DeadLetters:
    def __init__(self, client: aioredis.Redis, prefix: str, group: str) -> None:
        self.client, self.prefix, self.group = client, prefix, group
        keys = GroupKeys(prefix, group)
        self.attempts_key, self.parked_key, self.stream = keys.attempts, keys.parked, keys.dlq
        self.redrive_key = keys.redrive

    async def failed(self, delivery: Delivery) -> int:
        """Count one more failure of this entry; returns the count."""
        return int(await self.client.hincrby(self.attempts_key, delivery.ref, 1))

    async def park(self, parkings: list[Parking]) -> None:
        if not parkings:
            return
        cluster = is_cluster(self.client)
        # On a cluster no transaction spans the group's keys and the partition streams
        # (other slots): the dead letters first, then the acknowledgements. A crash
        # between leaves the entries pending, to be parked again: the first update of a
        # story is then acknowledged as parked already (`Runner`), and one behind it may
        # have its dead letter twice (a redrive applies it once: versions say so).
        pipe = self.client.pipeline(transaction=not cluster)
        acks = self.client.pipeline(transaction=False) if cluster else pipe
        for p in parkings:
            d = p.delivery
            pipe.xadd(
                self.stream,
                {
                    "story": d.key,
                    "partition": d.partition,
                    "entry": d.entry_id,
                    "record": d.raw,
                    "error": p.error,
                    "traceback": p.traceback,
                    "behind": p.behind,
                },
            )
            if d.key:
                pipe.hsetnx(self.parked_key, d.key, d.ref)
            pipe.hdel(self.attempts_key, d.ref)
            acks.xack(d.stream, self.group, d.entry_id)
        await pipe.execute()
        if acks is not pipe:
            await acks.execute()

    async def acknowledge(self, deliveries: list[Delivery]) -> None:
        """Acknowledge entries parked already (their dead letters written, their
        acknowledgement lost with a crash between the two: on a cluster only)."""
        pipe = self.client.pipeline(transaction=False)
        for d in deliveries:
            pipe.xack(d.stream, self.group, d.entry_id)
        await pipe.execute()

    async def entries(self, story: str | None = None) -> list[tuple[str, dict[str, str]]]:
        """Parked updates, oldest first; only one story's if `story` is given."""
        raw = cast(list[tuple[bytes, dict[bytes, bytes]]], await self.client.xrange(self.stream))
        out = []
        for eid, fields in raw:
            doc = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
            if story is None or doc.get("story") == story:
                out.append((eid.decode(), doc))
        return out

    async def holds(self, story: str) -> bool:
        """Whether `story` is parked or has dead letters (a crash between the two writes,
        on a cluster, leaves one without the other)."""
        return bool(await self.client.hexists(self.parked_key, story)) or bool(
            await self.entries(story)
        )

    async def release(self, story: str) -> int:
        """Unpark a story and drop its dead letters (after it was rebuilt from the log)."""
        ids = [eid for eid, _ in await self.entries(story)]
        if is_cluster(self.client):
            # Two slots, no transaction (and a pipeline over nodes keeps no order):
            # unparked first, then the letters, which a crash between leaves to discard.
            await self.client.hdel(self.parked_key, story)
            if ids:
                await self.client.xdel(self.stream, *ids)
            await self.client.hdel(self.redrive_key, story)
            return len(ids)
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.parked_key, story)
        if ids:
            pipe.xdel(self.stream, *ids)
        pipe.hdel(self.redrive_key, story)  # nothing left to redrive, nor a failure to tell
        await pipe.execute()
        return len(ids)

    async def letters(self, story: str) -> list[Letter]:
        """STORY's parked updates, each once and in log order, their records as bytes."""
        raw = cast(list[tuple[bytes, dict[bytes, bytes]]], await self.client.xrange(self.stream))
        found: dict[tuple[int, tuple[int, int]], Letter] = {}
        for eid, fields in raw:
            if fields.get(b"story", b"").decode() != story:
                continue
            partition, entry = int(fields[b"partition"]), fields[b"entry"].decode()
            at = (partition, stream_id(entry))
            ids = (*found[at].ids, eid.decode()) if at in found else (eid.decode(),)
            found[at] = Letter(ids, partition, entry, story, fields.get(b"record", b""))
        return [found[at] for at in sorted(found)]

    async def ask_redrive(self, story: str) -> int:
        """Ask the group's consumer to handle STORY's parked updates again, in order, and
        unpark it if they all pass; how many it holds (none: nothing is asked)."""
        letters = await self.letters(story)
        if letters:
            await self.client.hset(self.redrive_key, story, REDRIVE_ASKED)
        return len(letters)

    async def redrives(self) -> dict[str, str]:
        """Each story's redrive: `REDRIVE_ASKED`, or why it stopped (not read yet)."""
        found = cast(dict[bytes, bytes], await self.client.hgetall(self.redrive_key))
        return {k.decode(): v.decode() for k, v in sorted(found.items())}

    async def redrives_asked(self) -> list[str]:
        """The stories whose redrive was asked and not served yet."""
        return [story for story, state in (await self.redrives()).items() if state == REDRIVE_ASKED]

    async def redrive_state(self, story: str) -> str | None:
        """`REDRIVE_ASKED` until served; then None if the story was redriven, else why not."""
        found = cast(bytes | None, await self.client.hget(self.redrive_key, story))
        return None if found is None else found.decode()

    async def forget_redrive(self, story: str) -> None:
        """Drop a redrive's request or its failure (read by whoever asked)."""
        await self.client.hdel(self.redrive_key, story)

    async def redriven(
        self, story: str, handled: list[Letter], left: list[Letter], failure: str
    ) -> None:
        """A redrive's end: the letters handled go. With none left the story is unparked
        and the request done; else the story stays parked, now behind the first letter
        left, and the request holds `failure` for whoever asked.

        On a cluster the keys are in several slots and no transaction spans them: a
        crash part way leaves a letter handled and still parked, or the request still
        asked; served again, a letter is handled twice at worst (handlers of a kit are
        at-least-once already)."""
        cluster = is_cluster(self.client)
        pipe = self.client.pipeline(transaction=not cluster)
        ids = [i for letter in handled for i in letter.ids]
        if ids:
            pipe.xdel(self.stream, *ids)
        if left:
            pipe.hset(self.parked_key, story, left[0].ref)
            pipe.hset(self.redrive_key, story, failure)
        else:
            pipe.hdel(self.parked_key, story)
            pipe.hdel(self.redrive_key, story)
        await pipe.execute()

    async def parked(self) -> dict[str, str]:
        """Every parked story, and the entry (`<partition>:<entry id>`) that parked it."""
        found = cast(dict[bytes, bytes], await self.client.hgetall(self.parked_key))
        return {k.decode(): v.decode() for k, v in found.items()}

    async def counts(self) -> dict[str, Any]:
        return {
            "parked_stories": int(await self.client.hlen(self.parked_key)),
            "parked_updates": int(await self.client.xlen(self.stream)),
        }
