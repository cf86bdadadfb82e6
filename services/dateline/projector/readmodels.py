"""The read models in Redis, per projection version, each readable in one round trip.

<prefix>:rm:active                    the version dashboards read ("v1", ...)
<prefix>:rm:<v>:story:<id>            JSON story state (without its timeline)
<prefix>:rm:<v>:timeline:<id>         JSON list of timeline entries
<prefix>:rm:<v>:index                 hash story -> JSON entry: status, outcome, last update
<prefix>:rm:<v>:speaker:<name>        hash "<story>/<ref>" -> JSON statement
<prefix>:rm:<v>:schedule              hash "<story>/<item>" -> JSON schedule entry
<prefix>:rm:<v>:checkpoint            hash partition -> last stream id applied
"""

from __future__ import annotations

from typing import Any

import msgspec
from redis.asyncio.client import Pipeline

from dateline.projection.order import fold_text
from dateline.projection.state import Entry, Item, Statement, StoryState

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
        """Queue the writes that take the read models from `old` to `new` for one story."""
        timeline: list[Entry] = new.timeline
        pipe.set(self.story(new.id), _encode(without_timeline(new)))
        pipe.set(self.timeline(new.id), _encode(timeline))
        pipe.hset(self.index, new.id, _encode(_index_entry(new)))
        gone = {(s.speaker, ref) for ref, s in old.statements.items()} - {
            (s.speaker, ref) for ref, s in new.statements.items()
        }
        for speaker, ref in gone:
            pipe.hdel(self.speaker(speaker), f"{new.id}/{ref}")
        for ref, said in new.statements.items():
            if old.statements.get(ref) != said:
                pipe.hset(
                    self.speaker(said.speaker),
                    f"{new.id}/{ref}",
                    _encode(SpokenEntry(new.id, said)),
                )
        for ref in old.schedule.keys() - new.schedule.keys():
            pipe.hdel(self.schedule, f"{new.id}/{ref}")
        for ref, item in new.schedule.items():
            if old.schedule.get(ref) != item:
                pipe.hset(self.schedule, f"{new.id}/{ref}", _encode(ScheduleEntry(new.id, item)))


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
