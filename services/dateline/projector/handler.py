"""Turn a batch of one partition into read-model writes: decode, call the projection, write.

Exactly once: a story's state carries the version it has applied, so a
redelivered update (version <= state.version) is acknowledged and not applied
again; the states, the checkpoint and the acknowledgements go in one script.

The handler keeps the states it wrote, so a batch costs a read and a write rather
than the four round trips of WATCH, MGET, MULTI and EXEC. What it kept is fenced:
the commit script first checks that each story's stored state is still the one
the handler read or wrote (its SHA-1), and writes nothing if another writer (a
`dateline replay --story`, a projector that took the partition over) moved one on;
the handler then forgets those stories, reads them again and folds the batch anew.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import msgspec
import redis.asyncio as aioredis

from dateline.consumer import Delivery
from dateline.log import Log
from dateline.metrics import BATCH_SECONDS, PROJECTED
from dateline.projection import advance_in_place, project
from dateline.projection.state import StoryState
from dateline.projector.readmodels import RECALL, Change, ReadModels
from dateline_schemas import Update, decode_record, decode_records

Advance = Callable[[StoryState, Update], bool]
"""Fold an update into a state the handler owns, in place; False if it needs a refold."""
Project = Callable[[str, list[Update]], StoryState]

# A partition's checkpoint: past every entry its group was delivered and holds no
# longer (applied, or parked), never past one it still holds (it failed and waits for a
# retry, or waits behind one of its story's that did), never backwards. Readers take
# what is under it as settled: `min_position` answers, the index stream announces it.
# It used to be the last entry a commit applied, which passed a failed entry during
# its retries (a read waiting for it answered 200 without it) and stopped short of
# entries parked at a partition's end until its next commit.
# ADVANCE(checkpoints, partition, stream, group, channel) moves it, and PUBLISHes the new
# checkpoint as a position.
_ADVANCE = """
local function older(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if tonumber(am) ~= tonumber(bm) then return tonumber(am) < tonumber(bm) end
  return tonumber(as) < tonumber(bs)
end

local function advance(key, partition, stream, group, channel)
  local upto = nil
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local fields = {}
    for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
    if fields['name'] == group then upto = fields['last-delivered-id'] end
  end
  if not upto or upto == '0-0' then return end
  local pending = redis.call('XPENDING', stream, group)
  if pending[1] > 0 then
    local before = redis.call('XREVRANGE', stream, '(' .. pending[2], '-', 'COUNT', 1)
    if #before == 0 then return end
    if older(before[1][1], upto) then upto = before[1][1] end
  end
  local current = redis.call('HGET', key, partition)
  if current and not older(current, upto) then return end
  redis.call('HSET', key, partition, upto)
  redis.call('PUBLISH', channel, partition .. ':' .. upto)
end
"""
# KEYS: the batch's story state keys; ARGV: their expected SHA-1 ("" for none), then
# the commands, each as its length followed by its words (ADVANCE: see above). Returns
# 0, or the 1-based index of the first story whose state moved on (nothing written).
_COMMIT = (
    _ADVANCE
    + """
for i, key in ipairs(KEYS) do
  local raw = redis.call('GET', key)
  if (raw and redis.sha1hex(raw) or '') ~= ARGV[i] then return i end
end
local i = #KEYS + 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  if ARGV[i + 1] == 'ADVANCE' then
    advance(unpack(ARGV, i + 2, i + n))
  else
    redis.call(unpack(ARGV, i + 1, i + n))
  end
  i = i + n + 1
end
return 0
"""
)
# ARGV: as ADVANCE's, for the partitions whose entries were parked (no commit).
_SETTLE = (
    _ADVANCE
    + """
for i = 1, #ARGV, 5 do advance(unpack(ARGV, i, i + 4)) end
"""
)
# A kept state is bytes, not objects: the garbage collector does not see bytes, and
# thousands of kept states as objects made its collections the latency's p99 (20 to
# 50 ms, every few seconds). Decoding one costs about what the copy a batch needs did.
_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder(StoryState).decode
CONFLICT_RETRIES = 3
"""Fold a batch anew this often when another writer moved one of its stories on."""


class StoryMovedOn(Exception):
    """Another writer kept changing a batch's stories; the runner retries it later."""


def fence(raw: bytes | None) -> str:
    return "" if raw is None else hashlib.sha1(raw, usedforsecurity=False).hexdigest()


class ProjectorHandler:
    def __init__(
        self,
        client: aioredis.Redis,
        log: Log,
        models: ReadModels,
        group: str,
        advance_fn: Advance = advance_in_place,
        project_fn: Project = project,
        keep: int = 10_000,
    ) -> None:
        self.client, self.log, self.models, self.group = client, log, models, group
        self.advance, self.project = advance_fn, project_fn
        self.refolds = self.conflicts = 0
        self.keep = keep
        """How many stories' states to keep between batches, the least recent dropped."""
        self.kept: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        """Story -> its state as this handler last read or wrote it (msgpack), and its fence."""
        self._commit = client.register_script(_COMMIT)
        self._settle = client.register_script(_SETTLE)
        self._read = client.register_script(RECALL)

    async def handle(self, deliveries: list[Delivery]) -> dict[str, BaseException]:
        if not deliveries:
            return {}
        with BATCH_SECONDS.time():
            by_story: dict[str, list[Delivery]] = {}
            for d in deliveries:
                by_story.setdefault(d.key, []).append(d)
            for _ in range(CONFLICT_RETRIES):
                try:
                    done = await self._handle(by_story)
                except BaseException:  # whether it was written is unknown: read them again
                    self._forget(by_story)
                    raise
                if done is not None:
                    return done
                self.conflicts += 1
                self._forget(by_story)
            raise StoryMovedOn(f"stories of this batch kept changing: {list(by_story)[:5]}")

    async def _handle(self, by_story: dict[str, list[Delivery]]) -> dict[str, BaseException] | None:
        known = await self._recall(list(by_story))
        work = [self._advance(story, known[story][0], items) for story, items in by_story.items()]
        await self._refold([w for w in work if w.refold_to])
        failures = {w.failed.ref: w.error for w in work if w.failed and w.error}
        acked = [d for w in work for d in w.acked]
        if not acked:
            return failures
        writes = self.models.commands(
            [Change(w.old, w.state, w.refolded) for w in work if w.changed]
        )
        commands = writes.commands
        streams: dict[int, list[Delivery]] = {}
        for d in acked:
            streams.setdefault(d.partition, []).append(d)
        for partition, done in streams.items():
            commands.append(("XACK", done[0].stream, self.group, *[d.entry_id for d in done]))
            commands.append(("ADVANCE", *self._checkpoint_args(partition, done[0].stream)))
        stories = list(by_story)
        args: list[str | bytes | float] = [known[s][1] for s in stories]
        for command in commands:
            args.append(len(command))
            args.extend(command)
        moved = await self._commit(keys=[self.models.story(s) for s in stories], args=args)
        if moved:
            return None
        for w in work:
            if w.changed:
                w.state.timeline = []  # the stored state holds none: it is a list of its own
                self._keep(w.story, _pack(w.state), fence(writes.states[w.story]))
        PROJECTED.inc(len(acked))
        return failures

    async def settle(self, streams: dict[int, str]) -> None:
        """The runner parked entries of these partitions (`{partition: stream}`): move
        their checkpoints past what is settled now, as a commit would."""
        args = [a for p, s in sorted(streams.items()) for a in self._checkpoint_args(p, s)]
        await self._settle(args=args)

    def _checkpoint_args(self, partition: int, stream: str) -> tuple[str, ...]:
        return (self.models.checkpoint, str(partition), stream, self.group, self.models.changes)

    async def _recall(self, stories: list[str]) -> dict[str, tuple[bytes, str]]:
        """Each story's state and fence: kept, or read in one round trip."""
        known = {s: self.kept[s] for s in stories if s in self.kept}
        for story in known:
            self.kept.move_to_end(story)  # used: the least recent go first
        missing = [s for s in stories if s not in known]
        if missing:
            replies = await self._read(keys=self.models.recall_keys(missing))
            for story, reply in zip(missing, replies, strict=True):
                state, raw = self.models.decode_recalled(story, reply)
                known[story] = _pack(state), fence(raw)
                self._keep(story, *known[story])
        return known

    def _keep(self, story: str, state: bytes, sha: str) -> None:
        self.kept[story] = (state, sha)
        self.kept.move_to_end(story)
        while len(self.kept) > self.keep:
            self.kept.popitem(last=False)

    def _forget(self, stories: dict[str, list[Delivery]]) -> None:
        for story in stories:
            self.kept.pop(story, None)

    def _advance(self, story: str, kept: bytes, items: list[Delivery]) -> _Work:
        """Fold what can be folded in place; note where a refold from history must start."""
        work = _Work(story, _unpack(kept), _unpack(kept))
        for d in items:
            try:
                update = decode_record(d.raw)
                version = update.version or 0
                if work.refold_to:
                    work.refold_to = max(work.refold_to, version)
                elif version <= work.state.version:
                    pass  # redelivered: applied already
                elif version == work.state.version + 1 and self.advance(work.state, update):
                    work.changed, work.applied_to = True, version
                else:
                    work.refold_to, work.refold_at = version, len(work.acked)
            except Exception as exc:  # the runner retries, then parks it
                work.failed, work.error = d, exc
                if work.changed and not work.refold_to:
                    # It may have changed part of the state before raising: rebuild the
                    # state as of the last update that applied cleanly, from the log.
                    work.refold_to, work.refold_at = work.applied_to, len(work.acked)
                break
            work.acked.append(d)
        return work

    async def _refold(self, work: list[_Work]) -> None:
        """Refold the stories that need it, their histories fetched in one round trip."""
        if not work:
            return
        pipe = self.log.redis.pipeline(transaction=False)
        for w in work:
            pipe.lrange(self.log.keys.story(w.story), 0, w.refold_to - 1)
        histories = cast(list[list[bytes]], await pipe.execute())
        for w, history in zip(work, histories, strict=True):
            self.refolds += 1
            try:
                w.state = self.project(w.story, decode_records(history))
                w.changed = w.refolded = True
            except Exception as exc:
                if w.failed is None:  # the refold failed: retry from the update that asked for it
                    w.failed, w.error = w.acked[w.refold_at], exc
                    del w.acked[w.refold_at :]
                else:  # no state of this story can be trusted: write none, retry all of it
                    del w.acked[:]
                    w.changed = False


@dataclass
class _Work:
    """One story's part of a batch."""

    story: str
    old: StoryState
    state: StoryState
    acked: list[Delivery] = field(default_factory=list)
    changed: bool = False
    refolded: bool = False  # the state holds its whole timeline, not only entries to append
    refold_to: int = 0  # fold the history up to this version, once, after the pass
    refold_at: int = 0  # index in `acked` of the update that called for the refold
    applied_to: int = 0  # the last version folded in place, cleanly
    failed: Delivery | None = None
    error: BaseException | None = None
