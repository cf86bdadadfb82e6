"""The read models in Redis, per projection version, each readable in one round trip.

<prefix>:rm:active                    the version dashboards read ("v1", ...)
<prefix>:rm:<v>:story:<id>            JSON story state (without its timeline)
<prefix>:rm:<v>:timeline:<id>         JSON list of timeline entries
<prefix>:rm:<v>:index                 hash story -> JSON entry: status, outcome, last update
<prefix>:rm:<v>:speaker:<name>        hash "<story>/<ref>" -> JSON statement
<prefix>:rm:<v>:schedule              hash "<story>/<item>" -> JSON schedule entry
<prefix>:rm:<v>:schedule:by_start     zset "<story>/<item>" by start (epoch s; for ranges)
<prefix>:rm:<v>:checkpoint            hash partition -> last stream id applied
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio.client import Pipeline

from dateline.projection.order import fold_text
from dateline.projection.state import Entry, Item, Statement, StoryState
from dateline_schemas import parse_fuzzy_date

_encode = msgspec.json.Encoder().encode
_state = msgspec.json.Decoder(StoryState).decode
_timeline = msgspec.json.Decoder(list[Entry]).decode


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

    def keys_of(self, story: str) -> list[str]:
        """What `decode_state` needs, for one MGET."""
        return [self.story(story), self.timeline(story)]

    def decode_state(self, story: str, raw: bytes | None, timeline: bytes | None) -> StoryState:
        if raw is None:
            return StoryState(id=story)
        state = _state(raw)
        state.timeline = _timeline(timeline) if timeline else []
        return state

    def write(self, pipe: Pipeline, old: StoryState, new: StoryState) -> None:
        """Queue the writes that take one story's read models from `old` to `new`."""
        self.write_many(pipe, [(old, new)])

    def write_many(self, pipe: Pipeline, changes: list[tuple[StoryState, StoryState]]) -> None:
        """Queue the writes for many stories, a few commands per batch rather than per story."""
        if not changes:
            return
        batch = _Batch()
        for old, new in changes:
            batch.values[self.story(new.id)] = _encode(without_timeline(new))
            batch.values[self.timeline(new.id)] = _encode(new.timeline)
            batch.index[new.id] = _encode(_index_entry(new))
            self._statements(batch, old, new)
            self._schedule(batch, old, new)
        pipe.mset(batch.values)
        pipe.hset(self.index, mapping=batch.index)
        for key, fields in batch.unspoken.items():
            pipe.hdel(key, *fields)
        for key, mapping in batch.spoken.items():
            pipe.hset(key, mapping=mapping)
        if batch.board_gone:
            pipe.hdel(self.schedule, *batch.board_gone)
            pipe.zrem(self.schedule_by_start, *batch.board_gone)
        if batch.board:
            pipe.hset(self.schedule, mapping=batch.board)
        if batch.starts:
            pipe.zadd(self.schedule_by_start, batch.starts)

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


@dataclass
class _Batch:
    """The writes of one batch, grouped by key. Any keys: redis-py's Mapping is invariant."""

    values: dict[Any, bytes] = field(default_factory=dict)
    index: dict[Any, bytes] = field(default_factory=dict)
    board: dict[Any, bytes] = field(default_factory=dict)
    starts: dict[Any, float] = field(default_factory=dict)
    board_gone: list[str] = field(default_factory=list)
    spoken: dict[str, dict[Any, bytes]] = field(default_factory=dict)
    unspoken: dict[str, list[str]] = field(default_factory=dict)


def _start(text: str) -> float:
    """The earliest instant a start can mean. A date alone carries no offset: its UTC midnight."""
    return parse_fuzzy_date(text).start.timestamp()


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
