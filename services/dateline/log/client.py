"""The asyncio client for the update log: append, read a story, read a partition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from itertools import takewhile
from typing import Any, Literal, cast

import msgspec
import redis.asyncio as aioredis

from dateline.keys import Keys, dedup_field
from dateline_schemas import (
    MAX_BATCH_BYTES,
    MAX_BATCH_UPDATES,
    InvalidUpdate,
    Update,
    decode_record,
    decode_update,
)

Status = Literal["appended", "duplicate", "conflict", "invalid", "aborted"]
REFUSED: frozenset[Status] = frozenset({"conflict", "invalid", "aborted"})
_SCRIPT = resources.files("dateline.log").joinpath("append.lua").read_text()
_encode = msgspec.json.Encoder().encode
_pack = msgspec.msgpack.Encoder().encode


class AppendResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """What happened to one update of a batch, in the batch's order."""

    index: int
    status: Status
    id: str | None = None
    source: str | None = None
    subject: str | None = None
    version: int | None = None
    """The story version: the new one, or the original's for a duplicate."""
    position: str | None = None
    """The log position, `<partition>:<stream id>`: new, or the original's."""
    current_version: int | None = None
    """For a conflict: the version the story holds."""
    field: str | None = None
    reason: str | None = None

    @property
    def refused(self) -> bool:
        return self.status in REFUSED


class BatchTooLarge(ValueError):
    """More than 1,000 updates or 4 MiB in one batch."""


class PartitionMismatch(RuntimeError):
    """The log was created with another partition count than the one configured."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated batch with its script arguments, ready to submit."""

    results: list[AppendResult | None]  # filled in for refused updates already
    valid: list[tuple[int, Update]]
    keys: list[str]
    args: list[Any]
    atomic: bool


class Log:
    """The update log on one Redis server. Build with `Log(client, keys)` or `connect`."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._append = client.register_script(_SCRIPT)

    @classmethod
    async def connect(cls, url: str, *, prefix: str = "dateline", partitions: int = 8) -> Log:
        client = aioredis.Redis.from_url(url)
        log = cls(client, Keys(prefix, partitions))
        await log.check_partitions()
        return log

    async def close(self) -> None:
        await self.redis.aclose()

    async def check_partitions(self) -> None:
        """Record the partition count on first use; refuse to run with another one."""
        await self.redis.hsetnx(self.keys.config, "partitions", self.keys.partitions)
        stored = int(await self.redis.hget(self.keys.config, "partitions") or 0)
        if stored != self.keys.partitions:
            raise PartitionMismatch(
                f"the log under prefix {self.keys.prefix!r} has {stored} partitions; "
                f"DATELINE_PARTITIONS is {self.keys.partitions}. Set it to {stored}."
            )

    async def append(
        self, updates: Sequence[bytes | str | Update], *, atomic: bool = False
    ) -> list[AppendResult]:
        """Validate and append a batch: one result per update, in order.

        Invalid updates are refused and the others still land, unless `atomic`:
        then any refusal (invalid or conflict) writes nothing at all.
        """
        return await self.submit(self.prepare(updates, atomic=atomic))

    async def append_stream(
        self, batches: Iterable[Sequence[bytes | str | Update]], *, atomic: bool = False
    ) -> AsyncIterator[list[AppendResult]]:
        """Append batch after batch, in order, validating the next while Redis runs this one.

        For bulk loads: the client's CPU work overlaps the server's, and batch k+1
        is sent only after batch k has been answered, so log order is input order.
        """
        pending: asyncio.Task[list[AppendResult]] | None = None
        for batch in batches:
            prepared = self.prepare(batch, atomic=atomic)
            if pending is not None:
                yield await pending
            pending = asyncio.ensure_future(self.submit(prepared))
            await asyncio.sleep(0)  # let it send before we validate the next batch
        if pending is not None:
            yield await pending

    def prepare(self, updates: Sequence[bytes | str | Update], *, atomic: bool) -> Prepared:
        """Validate a batch and pack the script's arguments. CPU only, no I/O."""
        if len(updates) > MAX_BATCH_UPDATES:
            raise BatchTooLarge(
                f"batch: {len(updates)} updates, over the limit of {MAX_BATCH_UPDATES}"
            )
        results: list[AppendResult | None] = [None] * len(updates)
        valid: list[tuple[int, Update]] = []
        key_index: dict[str, int] = {}
        meta: list[tuple[int, int, int, int, str, int, int]] = []
        bodies: list[bytes] = []
        keys = self.keys
        for i, item in enumerate(updates):
            try:
                update, body = _validated(item)
            except InvalidUpdate as exc:
                results[i] = AppendResult(
                    i, "invalid", field=exc.problem.field, reason=exc.problem.message
                )
                continue
            valid.append((i, update))
            part = keys.partition(update.subject)
            meta.append(
                (
                    key_index.setdefault(keys.story(update.subject, part), len(key_index) + 1),
                    key_index.setdefault(keys.log(part), len(key_index) + 1),
                    key_index.setdefault(keys.ids(part), len(key_index) + 1),
                    part,
                    dedup_field(update.source, update.id),
                    -1 if update.expectedversion is None else update.expectedversion,
                    len(body) - 1,
                )
            )
            bodies.append(body[:-1])
        size = sum(map(len, bodies)) + len(bodies)
        if size > MAX_BATCH_BYTES:
            raise BatchTooLarge(f"batch: {size} bytes, over the limit of {MAX_BATCH_BYTES}")
        args = ["1" if atomic else "0", _pack(meta), b"".join(bodies)]
        return Prepared(results, valid, list(key_index), args, atomic)

    async def submit(self, prepared: Prepared) -> list[AppendResult]:
        """Run the append script for a prepared batch."""
        results, valid = prepared.results, prepared.valid
        if prepared.atomic and len(valid) < len(results):
            checked = dict(valid)
            return [results[i] or _aborted(i, checked[i]) for i in range(len(results))]
        if valid:
            replies = await self._append(keys=prepared.keys, args=prepared.args)
            for (i, update), reply in zip(valid, replies, strict=True):
                results[i] = _result(i, update, reply)
        return [r for r in results if r is not None]

    async def version(self, story: str) -> int:
        """How many updates the story holds (0 if none)."""
        return int(await self.redis.llen(self.keys.story(story)))

    async def read_story_json(
        self,
        story: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        as_of: datetime | None = None,
    ) -> list[bytes]:
        """The story's records as stored (JSON), versions from..to inclusive.

        `as_of` keeps only what had been recorded by then: what the desk knew. A
        story's records are in recordedtime order (its partition's stream ids only
        grow), so that is a prefix of the history.
        """
        stop = -1 if to_version is None else to_version - 1
        raw = cast(
            list[bytes], await self.redis.lrange(self.keys.story(story), from_version - 1, stop)
        )
        if as_of is None:
            return raw
        return list(takewhile(lambda r: _stamp(r).recordedtime <= as_of, raw))

    async def read_story(
        self,
        story: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        as_of: datetime | None = None,
    ) -> list[Update]:
        raw = await self.read_story_json(
            story, from_version=from_version, to_version=to_version, as_of=as_of
        )
        return [decode_record(r) for r in raw]

    async def read_partition(
        self, partition: int, *, after: str = "0-0", count: int = 1000
    ) -> list[tuple[str, Update]]:
        """Up to `count` records of one partition after stream id `after`, in log order."""
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self.redis.xrange(self.keys.log(partition), min=f"({after}", count=count),
        )
        return [(eid.decode(), decode_record(fields[b"__data__"])) for eid, fields in entries]


class _Stamp(msgspec.Struct):
    recordedtime: datetime


_stamp = msgspec.json.Decoder(_Stamp).decode


def _validated(item: bytes | str | Update) -> tuple[Update, bytes]:
    if isinstance(item, bytes | str):
        decoded = decode_update(item)
        return decoded.update, decoded.body
    # A Struct built in Python was checked by __post_init__; re-decode its JSON so
    # that it passes exactly the producer rules (no log fields, size limit).
    decoded = decode_update(_encode(item))
    return decoded.update, decoded.body


def _aborted(index: int, update: Update) -> AppendResult:
    return AppendResult(
        index,
        "aborted",
        id=update.id,
        source=update.source,
        subject=update.subject,
        reason="not written: the batch is atomic and another update in it was refused",
    )


def _result(index: int, update: Update, reply: list[Any]) -> AppendResult:
    who: dict[str, Any] = {"id": update.id, "source": update.source, "subject": update.subject}
    status = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
    if status == "appended":
        return AppendResult(index, "appended", version=int(reply[1]), position=_s(reply[2]), **who)
    if status == "duplicate":
        version, position, story = _s(reply[1]).split(" ", 2)
        reason = None if story == update.subject else f"this id was used for story {story!r}"
        return AppendResult(
            index, "duplicate", version=int(version), position=position, reason=reason, **who
        )
    if status == "conflict":
        return AppendResult(
            index,
            "conflict",
            current_version=int(reply[1]),
            field="expectedversion",
            reason=f"expected {update.expectedversion} updates, the story holds {int(reply[1])}",
            **who,
        )
    return _aborted(index, update)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
