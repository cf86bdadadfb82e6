"""The read models in Redis, per projection version, each readable in one round trip.

What each holds (`store/layout.py` spells the keys, under `<prefix>:rm:<version>:`):
    story:<id>        JSON story state (without its timeline; from shape 3 with
                      `"statements":{}`, which readers fill in)
    statements:<id>   list of `"<ref>":<JSON statement>`, in the state's order
    merge:<id>        hash: rule 3's merge key -> the statement's first ref (the
                      projector's bookkeeping; readers do not need it)
    timeline:<id>     list of JSON timeline entries, in timeline order
    index             hash story -> JSON entry: status, outcome, last update
    index:by_time     zset story by recordedtime (epoch s): the newest first, paged
    speaker:<name>    hash "<story>/<ref>" -> JSON statement
    speaker-at:<name> zset "<story>/<ref>" by the statement's time (epoch s; shape 6)
    schedule          hash "<story>/<item>" -> JSON schedule entry
    schedule:by_start zset "<story>/<item>" by start (epoch s; for ranges and pages;
                      from shape 6 an item with no known start at +inf)
    schedule:due      zset "<story>/<item>" of the items still to happen, by when they
                      fall due (epoch s): the overdue ones are a range read (shape 4)
    checkpoint        hash partition -> the last settled stream id
From shape 5 each of these is per partition (`layout.Region`), the story's keys under
its partition's; before, the cross-story ones are one for all partitions. And for every
version, the active version's name and the changes channel.

A story's statements live in a list of their own (shape 3), and the merge keys of
rule 3 in a hash, so that a commit writes the statements that changed, not all of
them: a story that had gathered 190 statements cost 72 KB of writes (and of AOF) an
update when they were part of the state. Readers get the state whole in one round
trip: `READ_STORY` splices the list back in.

The channel is a doorbell, not a feed: readers re-read the checkpoints when it rings
(and every second without it), so a missed message delays a push but loses nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress, islice
from operator import is_not, itemgetter
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from dateline.domain import Journal, unfold
from dateline.domain.overdue import OPEN, due_at
from dateline.domain.state import STORY_STATUSES, Entry, Item, Statement, StoryState
from dateline.store import scripts
from dateline.store.layout import Keys, ModelKeys, Region, active_key
from dateline_schemas import parse_fuzzy_date

_encode = msgspec.json.Encoder().encode
_state = msgspec.json.Decoder(StoryState).decode
_said = msgspec.json.Decoder(dict[str, Statement]).decode
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


STATUS_INDEXES = 2
"""The shape that brought the by-status indexes (`index_by_status`)."""
OWN_STATEMENTS = 3
"""The shape that keeps a story's statements in a list of their own (`statements`), and
their merge keys in a hash (`merge_keys`)."""
DUE_INDEX = 4
"""The shape that indexes the items still to happen by when they fall due
(`schedule_due`), so that the overdue ones are one range read."""
PER_PARTITION = 5
"""The shape that lays the read models out per partition (`layout.Region`): every key of
a story, and the index, speakers, schedule board and checkpoint of its partition, carry
the partition's hash tag, so that a partition's commit is one slot on a cluster."""
BOARDS_BY_TIME = 6
"""The shape that indexes every item of the schedule board by start, those with no
known start at +inf, and each speaker's statements by time (`speaker-at:<name>`), so
that a page of either board is read by its index rather than whole."""
SHAPE = BOARDS_BY_TIME
"""What a version's read models hold, counted up when that changes.

A version keeps the shape it was built with: a newer projector warns about an older
one, and the query service does not read indexes it lacks, until `dateline replay`.
"""


RECALL = scripts.load("recall")
READ_STORY = scripts.load("read_story")
DEFAULT_VERSION = "v1"
"""The projection version a new deployment starts with."""


class ReadModels(ModelKeys):
    """A projection version's read models: their keys (`ModelKeys`) and how to write them."""

    def __init__(self, keys: Keys, version: str, shape: int = SHAPE) -> None:
        super().__init__(keys.prefix, version, keys if shape >= PER_PARTITION else None)
        self.built = shape
        """The `SHAPE` this version was built with (readers skip the indexes it lacks)."""
        self.own_statements = shape >= OWN_STATEMENTS
        """Write statements to their own list; an older version keeps them inline."""
        self.due_index = shape >= DUE_INDEX
        """Index open items by when they fall due; an older version has no such index."""
        self.boards_by_time = shape >= BOARDS_BY_TIME
        """Index every item by start, those with none at +inf, and each speaker's
        statements by time; an older version leaves the first out and has no second."""

    def keys_of(self, story: str) -> list[str]:
        """The keys a writer of this story reads and must WATCH (`dateline replay --story`)."""
        return [self.timeline(story), *self.recall_keys([story])]

    def recall_keys(self, stories: list[str]) -> list[str]:
        """The keys `RECALL` reads for these stories."""
        return [
            *map(self.story, stories),
            *map(self.statements, stories),
            *map(self.merge_keys, stories),
        ]

    def decode_recalled(self, story: str, reply: list[Any]) -> tuple[StoryState, bytes | None]:
        """A story's state from its part of `RECALL`'s reply, without its timeline (writers
        only append to that list); and the stored state's bytes, the fence of a write."""
        if not reply:
            return StoryState(id=story), None
        raw, said, merge = reply
        state = _state(raw)
        if said:
            state.statements = _said(b"{" + b",".join(said) + b"}")
        if merge:
            pairs = zip(merge[::2], merge[1::2], strict=True)
            state.statement_keys = {k.decode(): ref.decode() for k, ref in pairs}
        return state, raw

    async def recall(self, client: Any, story: str) -> tuple[StoryState, bytes | None]:
        """`decode_recalled` of one story: for a WATCHing pipeline, or a client."""
        [reply] = await client.eval(RECALL, 3, *self.recall_keys([story]))
        return self.decode_recalled(story, reply)

    async def read_state(self, client: aioredis.Redis, story: str) -> StoryState:
        """The whole state, timeline included: one round trip."""
        pipe = client.pipeline(transaction=True)
        pipe.eval(RECALL, 3, *self.recall_keys([story]))
        pipe.lrange(self.timeline(story), 0, -1)
        [reply], entries = await pipe.execute()
        state, _ = self.decode_recalled(story, reply)
        state.timeline = [_entry(e) for e in entries]
        return state

    def write(self, pipe: Pipeline, old: StoryState, new: StoryState) -> None:
        """Queue the writes that take one story's read models from `old` to `new` (whole)."""
        self.write_many(pipe, [Change(old, new, whole_timeline=True)])

    def forget(self, pipe: Pipeline, old: StoryState) -> None:
        """Queue the writes that take one story's read models from `old` to none at all:
        what a rebuild holds of a story the log has no update of. Its statements and
        items leave the speakers' and the board's indexes as a change to an empty state
        takes them out; then its own keys and its places in the story indexes go."""
        self.write(pipe, old, StoryState(id=old.id))
        region = self.region_of(old.id)
        pipe.delete(*self.keys_of(old.id))
        pipe.hdel(region.index, old.id)
        pipe.zrem(region.index_by_time, old.id)
        for status in STORY_STATUSES:
            pipe.zrem(region.index_by_status(status), old.id)

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
        regions: dict[Region, list[Change]] = {}
        for change in changes:
            regions.setdefault(self.region_of(change.new.id), []).append(change)
        for region, some in regions.items():
            writes.commands += self._region(writes, region, some)
        return writes

    def _region(self, writes: Writes, region: Region, changes: list[Change]) -> list[Command]:
        """The commands of the changes of one region's stories (one slot, per partition).

        A live commit is a story or two: most of the batch's groups are empty, and each
        helper called for nothing was a call into Python (100 us a story's commit)."""
        batch, out = _Batch(), []
        for given in changes:
            # An older shape keeps statements inline and compares them: `old` as it was.
            appended, change = (
                _changed_statements(given) if self.own_statements else (None, _unfolded(given))
            )
            old, new = change.old, change.new
            if self.own_statements:
                raw = _encode(_stored(new))
                out += self._own_statements(region, change, appended)
                out += self._merge_keys(region, change)
            else:
                raw = _encode(without_timeline(new))
            writes.states[new.id] = raw
            batch.values[region.story(new.id)] = raw
            if change.whole_timeline:
                out.append(("DEL", region.timeline(new.id)))
            if new.timeline:
                out += _chunked(
                    ("RPUSH", region.timeline(new.id)), list(map(_encode, new.timeline))
                )
            batch.index[new.id] = writes.index[new.id] = _encode(_index_entry(new))
            batch.recent[new.id] = recorded_score(new.recordedtime)
            batch.by_status.setdefault(new.status, {})[new.id] = batch.recent[new.id]
            if old.status != new.status:
                batch.left_status.setdefault(old.status, []).append(new.id)
            self._statements(region, batch, old, new, appended)
            if old.schedule or new.schedule:
                self._schedule(batch, old, new)
        out += _paired("MSET", None, batch.values)
        out += _paired("HSET", region.index, batch.index)
        out += _scored(region.index_by_time, batch.recent)
        for status, stories in batch.left_status.items():
            out += _chunked(("ZREM", region.index_by_status(status)), stories)
        for status, recent in batch.by_status.items():
            out += _scored(region.index_by_status(status), recent)
        out += _speakers(region, batch, self.boards_by_time)
        return out + self._board(region, batch) if batch.has_board else out

    def _board(self, region: Region, batch: _Batch) -> list[Command]:
        """The schedule board's writes: entries, starts and, from shape 4, what is due."""
        out: list[Command] = []
        gone = [*batch.board_gone, *batch.closed] if self.due_index else []
        if batch.board_gone:
            out += _chunked(("HDEL", region.schedule), batch.board_gone)
            out += _chunked(("ZREM", region.schedule_by_start), batch.board_gone)
        out += _paired("HSET", region.schedule, batch.board)
        if batch.unstarted:
            out += _chunked(("ZREM", region.schedule_by_start), batch.unstarted)
        out += _scored(region.schedule_by_start, batch.starts)
        out += _chunked(("ZREM", region.schedule_due), gone)
        return out + (_scored(region.schedule_due, batch.due) if self.due_index else [])

    def _own_statements(
        self, region: Region, change: Change, appended: _Appended | None
    ) -> list[Command]:
        """Rewrite the statements that changed in place and append the new ones; all of
        them only when the old ones are not where they were (a refold, a retraction)."""
        if appended is not None and not appended:  # most commits: no statement changed
            return []
        key, now = region.statements(change.new.id), change.new.statements
        if appended is None:
            return [("DEL", key), *_chunked(("RPUSH", key), [_fragment(*s) for s in now.items()])]
        journal = change.journal
        kept = len(change.old.statements) if journal is None else journal.statements
        out: list[Command] = [
            ("LSET", key, i, _fragment(ref, said)) for i, ref, said, _ in appended if i < kept
        ]
        return out + _chunked(
            ("RPUSH", key), [_fragment(ref, said) for i, ref, said, _ in appended if i >= kept]
        )

    def _merge_keys(self, region: Region, change: Change) -> list[Command]:
        """The merge keys new since `old`; all of them if one went or changed."""
        old, new = change.old.statement_keys, change.new.statement_keys
        journal = change.journal
        if journal is not None and not change.whole_timeline:
            # Shared with `old`: the fold in place only adds them, at the end.
            added = len(new) - journal.keys
            if not added:  # most commits
                return []
            key = region.merge_keys(change.new.id)
            if added < 0:  # cannot be: all anew
                return [("DEL", key), *_paired("HSET", key, new)]
            # The last `added`, newest first: a hash's fields have no order.
            return _paired("HSET", key, dict(islice(reversed(new.items()), added)))
        key = region.merge_keys(change.new.id)
        # The fold only adds merge keys, at the end: a key gone, moved or changed
        # means all anew.
        grown = None if change.whole_timeline else _grown(old, new)
        if grown is None or grown[1][: len(old)] != grown[2]:  # keys or values moved
            return [("DEL", key), *_paired("HSET", key, new)]
        keys, values, _ = grown
        return _paired("HSET", key, dict(zip(keys[len(old) :], values[len(old) :], strict=True)))

    def _statements(
        self,
        region: Region,
        batch: _Batch,
        old: StoryState,
        new: StoryState,
        appended: _Appended | None,
    ) -> None:
        if appended is not None:  # the old statements are where they were: only these moved
            for _, ref, said, was in appended:
                if was is not None and was.speaker != said.speaker:
                    self._unsaid(region, batch, was, f"{new.id}/{ref}")
                self._said(region, batch, new.id, ref, said)
            return
        for ref, said in old.statements.items():
            now = new.statements.get(ref)
            if now is not said and (now is None or now.speaker != said.speaker):
                self._unsaid(region, batch, said, f"{new.id}/{ref}")
        for ref, said in new.statements.items():
            if _changed(old.statements.get(ref), said):
                self._said(region, batch, new.id, ref, said)

    def _said(self, region: Region, batch: _Batch, story: str, ref: str, said: Statement) -> None:
        member = f"{story}/{ref}"
        entry = _encode(SpokenEntry(story, said))
        key = region.speaker(said.speaker)
        batch.spoken.setdefault(key, {})[member] = entry
        if self.boards_by_time:  # by the hash's key: `_speakers` names the index once
            at = batch.said_at.setdefault(key, {})
            at[member] = datetime.fromisoformat(said.time).timestamp()

    def _unsaid(self, region: Region, batch: _Batch, said: Statement, member: str) -> None:
        batch.unspoken.setdefault(region.speaker(said.speaker), []).append(member)

    def _schedule(self, batch: _Batch, old: StoryState, new: StoryState) -> None:
        story, was, now = new.id, old.schedule, new.schedule
        if not was.keys() <= now.keys():
            batch.board_gone += [f"{story}/{ref}" for ref in was.keys() - now.keys()]
        for ref, item in now.items():
            before = was.get(ref)
            if before is item or before == item:  # `_changed`, inline: no call an item
                continue
            member = f"{story}/{ref}"
            batch.board[member] = _encode(ScheduleEntry(story, item))
            starts = item.starts_at
            if starts is not None:
                batch.starts[member] = _start(starts.at)
                if item.status in OPEN:
                    batch.due[member] = due_at(starts).timestamp()
                    continue
            elif self.boards_by_time:
                batch.starts[member] = math.inf  # last, as the board orders it
            else:  # an older shape's index has none: not where its start was (a retraction)
                batch.unstarted.append(member)
            batch.closed.append(member)


class Change(msgspec.Struct, frozen=True, gc=False):
    """One story's read models from `old` to `new`. `new.timeline` holds the whole timeline
    if `whole_timeline`, else only the entries to append. (A Struct: one is made a story
    a commit, and a frozen dataclass sets each field through `object.__setattr__`.)"""

    old: StoryState
    new: StoryState
    whole_timeline: bool
    journal: Journal | None = None
    """What a fold in place wrote into the statements and merge keys `new` shares with
    `old` (`fork`), and what they replaced: the commit writes those and looks at no
    other. None: the two share nothing, and the commit compares them."""


Command = tuple[str | bytes | float, ...]

_PAIRS = 1000
"""Pairs (or 2 x this many items) a command: a script's `unpack` of a command's words
stays well inside Lua's limit (8,000), however long a refolded story's timeline."""


@dataclass
class Writes:
    """The commands of one write, and each written story's stored state (its fence)."""

    commands: list[Command] = field(default_factory=list)
    states: dict[str, bytes] = field(default_factory=dict)
    index: dict[str, bytes] = field(default_factory=dict)
    """Each written story's index entry, as a live index stream pushes it (`store/pages.py`)."""


def _speakers(region: Region, batch: _Batch, by_time: bool) -> list[Command]:
    """The speakers' writes: the statements that left a speaker, then those said; each
    in the speaker's hash and, `by_time` (shape 6), in its index by time (named from
    the hash's key, whose name costs a fold of the speaker's)."""
    out: list[Command] = []
    for key, fields in batch.unspoken.items():
        out += _chunked(("HDEL", key), fields)
        if by_time:
            out += _chunked(("ZREM", region.by_time_of_speaker(key)), fields)
    for key, mapping in batch.spoken.items():
        out += _paired("HSET", key, mapping)
    for key, times in batch.said_at.items():
        out += _scored(region.by_time_of_speaker(key), times)
    return out


def _paired(name: str, key: str | None, mapping: dict[Any, Any]) -> list[Command]:
    """`name [key] field value ...`, in commands of at most `_PAIRS` pairs."""
    head = (name,) if key is None else (name, key)
    return _chunked(head, [x for pair in mapping.items() for x in pair])


def _scored(key: str, scores: dict[Any, float]) -> list[Command]:
    if len(scores) == 1:  # a live commit's most: a story's places, a statement's time
        [(member, score)] = scores.items()
        return [("ZADD", key, score, member)]
    return _chunked(("ZADD", key), [x for member, score in scores.items() for x in (score, member)])


def _chunked(head: tuple[str, ...], items: list[Any]) -> list[Command]:
    step = 2 * _PAIRS
    if len(items) <= step:  # nearly always: one command, or none
        return [(*head, *items)] if items else []
    return [(*head, *items[i : i + step]) for i in range(0, len(items), step)]


class _Batch:
    """The writes of one batch, grouped by key. Any keys: redis-py's Mapping is invariant.
    (Slots set in `__init__`: a live commit makes one a partition it writes, and a
    dataclass's twelve `default_factory` calls took 0.73 us a batch against 0.35.)"""

    __slots__ = (
        "board",
        "board_gone",
        "by_status",
        "closed",
        "due",
        "index",
        "left_status",
        "recent",
        "said_at",
        "spoken",
        "starts",
        "unspoken",
        "unstarted",
        "values",
    )

    def __init__(self) -> None:
        self.values: dict[Any, bytes] = {}
        self.index: dict[Any, bytes] = {}
        self.recent: dict[Any, float] = {}
        self.by_status: dict[str, dict[Any, float]] = {}
        self.left_status: dict[str, list[str]] = {}
        self.board: dict[Any, bytes] = {}
        self.starts: dict[Any, float] = {}
        self.unstarted: list[str] = []
        self.board_gone: list[str] = []
        self.due: dict[Any, float] = {}
        self.closed: list[str] = []
        self.spoken: dict[str, dict[Any, bytes]] = {}
        self.unspoken: dict[str, list[str]] = {}
        self.said_at: dict[str, dict[Any, float]] = {}

    @property
    def has_board(self) -> bool:
        return bool(self.board or self.board_gone or self.closed or self.starts or self.due)


def _changed(old: object, new: object) -> bool:
    """Whether a statement or an item changed. The fold replaces what it changes (`evolve`),
    so in a projector's commit most are the same object as before: a pointer's
    comparison, not a field by field one, over every statement of a long story."""
    return old is not new and old != new


_Appended = list[tuple[int, str, Statement, Statement | None]]
"""(position, ref, the statement now, as it was or None if new): what changed."""


def _changed_statements(change: Change) -> tuple[_Appended | None, Change]:
    """`_appended`, from the fold's journal if it has one, and the change to commit: if
    the statements are not as the journal says, the change with `old` as it was."""
    if change.journal is None or change.whole_timeline:
        return _appended(change), change
    told = _written(change.new.statements, change.journal)
    if told is not None:
        return told, change
    change = _unfolded(change)
    return _appended(change), change


def _appended(change: Change) -> _Appended | None:
    """The statements that changed or came, with their places; None when the old ones
    are not where they were (a refold, a retraction, a whole write), and every statement
    is written anew.

    Over a long story's statements the work is in C, and in Python only over what
    changed. With a loop in Python over every statement, each commit, the projector's
    live cycles on stories of 500 statements cost 2.8 times the instructions an update
    of those on stories of 3 (`bench/pyinstr.py`, `live-long`); 1.8 times since."""
    old, new = change.old.statements, change.new.statements
    if change.whole_timeline or (grown := _grown(old, new)) is None:
        return None
    refs, now, was = grown
    kept = len(was)
    out: _Appended = []
    # A list's comparison passes over the same object without calling its `__eq__`, and
    # the fold replaces what it changes (`evolve`): most are the same objects.
    if now[:kept] != was:
        moved = compress(range(kept), map(is_not, now, was))
        out += [(i, refs[i], now[i], was[i]) for i in moved if now[i] != was[i]]
    return out + [(i, refs[i], now[i], None) for i in range(kept, len(refs))]


def _written(new: dict[str, Statement], journal: Journal) -> _Appended | None:
    """`_appended` from the journal of a fold in place: the work grows with what it wrote,
    not with the story. None if the statements `new` holds past the old ones are not the
    new ones it wrote, in their order (then the caller compares)."""
    if not journal.said:  # most commits: a fold that wrote no statement
        return [] if len(new) == journal.statements else None
    stored: dict[str, Statement | None] = {}
    for ref, was in journal.said:
        stored.setdefault(ref, was)  # what its first write replaced: the stored one
    changed: _Appended = []
    fresh: list[str] = []
    refs: list[str] | None = None
    for ref, was in stored.items():
        now = new.get(ref)
        if now is None:
            return None
        if was is None:
            fresh.append(ref)
        elif now is not was and now != was:
            refs = list(new) if refs is None else refs  # its place: rarely asked, in C
            changed.append((refs.index(ref), ref, now, was))
    kept = journal.statements
    if len(new) - kept != len(fresh) or list(islice(reversed(new), len(fresh)))[::-1] != fresh:
        return None
    changed.sort(key=itemgetter(0))
    return changed + [(kept + i, ref, new[ref], None) for i, ref in enumerate(fresh)]


def _unfolded(change: Change) -> Change:
    """`change` with the statements and merge keys of its `old` as they were before the
    fold in place (copies, undone from the journal), to compare with."""
    old, journal = change.old, change.journal
    if journal is None:
        return change
    if not journal.said:  # nothing written: `old` is as it was
        return Change(old, change.new, change.whole_timeline)
    was = msgspec.structs.replace(
        old, statements=dict(old.statements), statement_keys=dict(old.statement_keys)
    )
    unfold(was, Journal(journal.statements, journal.keys, list(journal.said)))
    return Change(was, change.new, change.whole_timeline)


def _grown(
    old: dict[str, Any], new: dict[str, Any]
) -> tuple[list[str], list[Any], list[Any]] | None:
    """`new`'s keys and values and `old`'s values, as lists, if `new`'s keys begin with
    `old`'s in their order; else None. (A list of a dict's keys or values is made in C
    without its iterator: through `islice` they cost a tenth more.)"""
    refs = list(new)
    if refs[: len(old)] != list(old):  # shorter, or not in their order
        return None
    return refs, list(new.values()), list(old.values())


def _fragment(ref: str, said: Statement) -> bytes:
    """A statement as its member of the state's `statements` object: `"<ref>":{...}`."""
    return _encode(ref) + b":" + _encode(said)


async def read_checkpoints(client: aioredis.Redis, models: ModelKeys) -> dict[int, str]:
    """Each partition's checkpoint (its last settled stream id), from every region: one
    round trip (on a cluster, the client's pipeline goes to each node)."""
    pipe = client.pipeline(transaction=False)
    for region in models.regions:
        pipe.hgetall(region.checkpoint)
    found: dict[int, str] = {}
    for raw in cast(list[dict[bytes, bytes]], await pipe.execute()):
        found.update((int(p), v.decode()) for p, v in raw.items())
    return found


async def stamped_shape(client: aioredis.Redis, models: ModelKeys) -> int | None:
    """The `SHAPE` a version was built with; None for a version nothing has written yet;
    1 for one written before shapes were stamped (they had one checkpoint for all)."""
    raw = await client.get(models.shape)
    if raw is None:
        unstamped = ModelKeys(models.prefix, models.version).region(0)  # one for all then
        return None if not await client.exists(unstamped.checkpoint) else 1
    return int(raw)


async def open_models(client: aioredis.Redis, keys: Keys, version: str) -> ReadModels:
    """A version's read models, written as that version was built (its shape)."""
    shape = await stamped_shape(client, keys.models(version))
    return ReadModels(keys, version, SHAPE if shape is None else shape)


def _start(text: str) -> float:
    """The earliest instant a start can mean. A date alone carries no offset: its UTC midnight."""
    return parse_fuzzy_date(text).start.timestamp()


def recorded_score(text: str | None) -> float:
    """A story's score in the by-time indexes: its `recordedtime`, in seconds."""
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


def _stored(state: StoryState) -> dict[str, Any]:
    """The state as shape 3 stores it, in the state's order: its statements and merge
    keys kept apart (the timeline is a list of its own, and the merge keys are the
    projector's alone: readers are not sent them). Its members as they are, for the
    encoder: converting the state to builtins first cost
    more than the encoding (16 us a story against 7, every commit)."""
    doc = msgspec.structs.asdict(state)  # shallow, in C: a getattr a member cost 3 us
    del doc["timeline"], doc["statement_keys"]
    doc["statements"] = {}  # the needle `whole_story.lua` splices them into
    return doc


async def active_version(client: aioredis.Redis, prefix: str) -> str:
    """The projection version dashboards read; set to `DEFAULT_VERSION` on first start."""
    await client.set(active_key(prefix), DEFAULT_VERSION, nx=True)
    value = await client.get(active_key(prefix))
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_active(client: aioredis.Redis, prefix: str) -> str | None:
    """The active version as it is, without setting it (None before a projector starts)."""
    value = await client.get(active_key(prefix))
    return value.decode() if isinstance(value, bytes) else None
