"""The read models in Redis, per projection version, each readable in one round trip.

<prefix>:rm:active                    the version dashboards read ("v1", ...)
<prefix>:rm:<v>:story:<id>            JSON story state (without its timeline)
<prefix>:rm:<v>:timeline:<id>         list of JSON timeline entries, in timeline order
<prefix>:rm:<v>:index                 hash story -> JSON entry: status, outcome, last update
<prefix>:rm:<v>:index:by_time         zset story by recordedtime (epoch s): the newest first, paged
<prefix>:rm:<v>:speaker:<name>        hash "<story>/<ref>" -> JSON statement
<prefix>:rm:<v>:schedule              hash "<story>/<item>" -> JSON schedule entry
<prefix>:rm:<v>:schedule:by_start     zset "<story>/<item>" by start (epoch s; for ranges)
<prefix>:rm:<v>:checkpoint            hash partition -> last stream id applied
<prefix>:rm:changes                   pub/sub channel: a partition's read models moved on

The channel is a doorbell, not a feed: readers re-read the checkpoints when it rings
(and every second without it), so a missed message delays a push but loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from dateline.projection.order import fold_text
from dateline.projection.state import Entry, Item, Statement, StoryState
from dateline_schemas import parse_fuzzy_date

_encode = msgspec.json.Encoder().encode
_state = msgspec.json.Decoder(StoryState).decode
_entry = msgspec.json.Decoder(Entry).decode


class IndexEntry(msgspec.Struct):
    id: str
    title: str | None
    status: str
    version: int
    outcome: str | None
    last_time: str | None
    recordedtime: str | None


class ScheduleEntry(msgspec.Struct):
    story: str
    item: Item


class SpokenEntry(msgspec.Struct):
    story: str
    statement: Statement


def changes_channel(prefix: str) -> str:
    return f"{prefix}:rm:changes"


STATUS_INDEXES = 2
"""The shape that brought the by-status indexes (`index_by_status`)."""
SHAPE = STATUS_INDEXES
"""What a version's read models hold, counted up when that changes.

A version keeps the shape it was built with: a newer projector warns about an older
one, and the query service does not read indexes it lacks, until `dateline replay`.
"""


class ReadModels:
    def __init__(self, prefix: str, version: str) -> None:
        self.prefix, self.version = prefix, version
        self.base = f"{prefix}:rm:{version}"

    def story(self, story: str) -> str:
        return f"{self.base}:story:{story}"

    def timeline(self, story: str) -> str:
        return f"{self.base}:timeline:{story}"

    @property
    def index(self) -> str:
        return f"{self.base}:index"

    @property
    def index_by_time(self) -> str:
        return f"{self.base}:index:by_time"

    def index_by_status(self, status: str) -> str:
        """The stories of one status by last recorded time: `?status=` reads only these."""
        return f"{self.base}:index:{status}:by_time"

    def speaker(self, name: str) -> str:
        return f"{self.base}:speaker:{fold_text(name)}"

    @property
    def schedule(self) -> str:
        return f"{self.base}:schedule"

    @property
    def schedule_by_start(self) -> str:
        return f"{self.base}:schedule:by_start"

    @property
    def checkpoint(self) -> str:
        return f"{self.base}:checkpoint"

    @property
    def shape(self) -> str:
        """The `SHAPE` this version was built with; none written: 1."""
        return f"{self.base}:shape"

    @property
    def changes(self) -> str:
        return changes_channel(self.prefix)

    def keys_of(self, story: str) -> list[str]:
        """The keys a writer of this story reads and must WATCH (`dateline replay --story`)."""
        return [self.story(story), self.timeline(story)]

    def decode_state(self, story: str, raw: bytes | None) -> StoryState:
        """The stored state, without its timeline (writers only append to that list)."""
        return StoryState(id=story) if raw is None else _state(raw)

    async def read_state(self, client: aioredis.Redis, story: str) -> StoryState:
        """The whole state, timeline included: two keys, one round trip."""
        pipe = client.pipeline(transaction=False)
        pipe.get(self.story(story))
        pipe.lrange(self.timeline(story), 0, -1)
        raw, entries = await pipe.execute()
        state = self.decode_state(story, raw)
        state.timeline = [_entry(e) for e in entries]
        return state

    def write(self, pipe: Pipeline, old: StoryState, new: StoryState) -> None:
        """Queue the writes that take one story's read models from `old` to `new` (whole)."""
        self.write_many(pipe, [Change(old, new, whole_timeline=True)])

    def write_many(self, pipe: Pipeline, changes: list[Change]) -> None:
        """Queue the writes for many stories, a few commands per batch rather than per story."""
        for command in self.commands(changes).commands:
            pipe.execute_command(*command)

    def commands(self, changes: list[Change]) -> Writes:
        """The commands that take these stories' read models from `old` to `new`.

        Commands rather than calls on a pipeline, so that a writer can send them inside
        a script (the projector's fenced commit) as well as in a MULTI.
        """
        writes = Writes()
        if not changes:
            return writes
        batch, out = _Batch(), writes.commands
        for change in changes:
            old, new = change.old, change.new
            raw = writes.states[new.id] = _encode(without_timeline(new))
            batch.values[self.story(new.id)] = raw
            if change.whole_timeline:
                out.append(("DEL", self.timeline(new.id)))
            if new.timeline:
                out += _chunked(("RPUSH", self.timeline(new.id)), list(map(_encode, new.timeline)))
            batch.index[new.id] = _encode(_index_entry(new))
            batch.recent[new.id] = _recorded(new.recordedtime)
            batch.by_status.setdefault(new.status, {})[new.id] = batch.recent[new.id]
            if old.status != new.status:
                batch.left_status.setdefault(old.status, []).append(new.id)
            self._statements(batch, old, new)
            self._schedule(batch, old, new)
        out += _paired("MSET", None, batch.values)
        out += _paired("HSET", self.index, batch.index)
        out += _scored(self.index_by_time, batch.recent)
        for status, stories in batch.left_status.items():
            out += _chunked(("ZREM", self.index_by_status(status)), stories)
        for status, recent in batch.by_status.items():
            out += _scored(self.index_by_status(status), recent)
        for key, fields in batch.unspoken.items():
            out += _chunked(("HDEL", key), fields)
        for key, mapping in batch.spoken.items():
            out += _paired("HSET", key, mapping)
        if batch.board_gone:
            out += _chunked(("HDEL", self.schedule), batch.board_gone)
            out += _chunked(("ZREM", self.schedule_by_start), batch.board_gone)
        out += _paired("HSET", self.schedule, batch.board)
        out += _scored(self.schedule_by_start, batch.starts)
        return writes

    def _statements(self, batch: _Batch, old: StoryState, new: StoryState) -> None:
        for ref, said in old.statements.items():
            if ref not in new.statements or new.statements[ref].speaker != said.speaker:
                batch.unspoken.setdefault(self.speaker(said.speaker), []).append(f"{new.id}/{ref}")
        for ref, said in new.statements.items():
            if old.statements.get(ref) != said:
                entry = _encode(SpokenEntry(new.id, said))
                batch.spoken.setdefault(self.speaker(said.speaker), {})[f"{new.id}/{ref}"] = entry

    def _schedule(self, batch: _Batch, old: StoryState, new: StoryState) -> None:
        batch.board_gone += [f"{new.id}/{ref}" for ref in old.schedule.keys() - new.schedule.keys()]
        for ref, item in new.schedule.items():
            if old.schedule.get(ref) != item:
                batch.board[f"{new.id}/{ref}"] = _encode(ScheduleEntry(new.id, item))
                if item.starts_at is not None:
                    batch.starts[f"{new.id}/{ref}"] = _start(item.starts_at.at)


@dataclass(frozen=True, slots=True)
class Change:
    """One story's read models from `old` to `new`. `new.timeline` holds the whole timeline
    if `whole_timeline`, else only the entries to append."""

    old: StoryState
    new: StoryState
    whole_timeline: bool


Command = tuple[str | bytes | float, ...]

_PAIRS = 1000
"""Pairs (or 2 x this many items) a command: a script's `unpack` of a command's words
stays well inside Lua's limit (8,000), however long a refolded story's timeline."""


@dataclass
class Writes:
    """The commands of one write, and each written story's stored state (its fence)."""

    commands: list[Command] = field(default_factory=list)
    states: dict[str, bytes] = field(default_factory=dict)


def _paired(name: str, key: str | None, mapping: dict[Any, Any]) -> list[Command]:
    """`name [key] field value ...`, in commands of at most `_PAIRS` pairs."""
    head = (name,) if key is None else (name, key)
    return _chunked(head, [x for pair in mapping.items() for x in pair])


def _scored(key: str, scores: dict[Any, float]) -> list[Command]:
    return _chunked(("ZADD", key), [x for member, score in scores.items() for x in (score, member)])


def _chunked(head: tuple[str, ...], items: list[Any]) -> list[Command]:
    step = 2 * _PAIRS
    return [(*head, *items[i : i + step]) for i in range(0, len(items), step)]


@dataclass
class _Batch:
    """The writes of one batch, grouped by key. Any keys: redis-py's Mapping is invariant."""

    values: dict[Any, bytes] = field(default_factory=dict)
    index: dict[Any, bytes] = field(default_factory=dict)
    recent: dict[Any, float] = field(default_factory=dict)
    by_status: dict[str, dict[Any, float]] = field(default_factory=dict)
    left_status: dict[str, list[str]] = field(default_factory=dict)
    board: dict[Any, bytes] = field(default_factory=dict)
    starts: dict[Any, float] = field(default_factory=dict)
    board_gone: list[str] = field(default_factory=list)
    spoken: dict[str, dict[Any, bytes]] = field(default_factory=dict)
    unspoken: dict[str, list[str]] = field(default_factory=dict)


def _start(text: str) -> float:
    """The earliest instant a start can mean. A date alone carries no offset: its UTC midnight."""
    return parse_fuzzy_date(text).start.timestamp()


def _recorded(text: str | None) -> float:
    return datetime.fromisoformat(text).timestamp() if text else 0.0


def _index_entry(state: StoryState) -> IndexEntry:
    return IndexEntry(
        id=state.id,
        title=state.title,
        status=state.status,
        version=state.version,
        outcome=state.outcome.result if state.outcome else None,
        last_time=state.last_time,
        recordedtime=state.recordedtime,
    )


def without_timeline(state: StoryState) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.to_builtins(state)
    doc.pop("timeline", None)
    return doc
