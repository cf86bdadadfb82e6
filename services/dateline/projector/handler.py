"""Turn a batch of one partition into read-model writes: decode, call the projection, write.

Exactly once: a story's state carries the version it has applied, so a
redelivered update (version <= state.version) is acknowledged and not applied
again; the states, the checkpoint and the acknowledgements go in one MULTI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import redis.asyncio as aioredis

from dateline.consumer import Delivery
from dateline.log import Log
from dateline.metrics import BATCH_SECONDS, PROJECTED
from dateline.projection import advance_in_place, copy_state, project
from dateline.projection.state import StoryState
from dateline.projector.readmodels import Change, ReadModels
from dateline_schemas import Update, decode_record

Advance = Callable[[StoryState, Update], bool]
"""Fold an update into a state the handler owns, in place; False if it needs a refold."""
Project = Callable[[str, list[Update]], StoryState]


class ProjectorHandler:
    def __init__(
        self,
        client: aioredis.Redis,
        log: Log,
        models: ReadModels,
        group: str,
        advance_fn: Advance = advance_in_place,
        project_fn: Project = project,
    ) -> None:
        self.client, self.log, self.models, self.group = client, log, models, group
        self.advance, self.project = advance_fn, project_fn
        self.refolds = 0

    async def handle(self, deliveries: list[Delivery]) -> dict[str, BaseException]:
        if not deliveries:
            return {}
        with BATCH_SECONDS.time():
            return await self._handle(deliveries)

    async def _handle(self, deliveries: list[Delivery]) -> dict[str, BaseException]:
        by_story: dict[str, list[Delivery]] = {}
        for d in deliveries:
            by_story.setdefault(d.key, []).append(d)
        keys = [key for s in by_story for key in self.models.keys_of(s)]
        async with self.client.pipeline(transaction=True) as pipe:
            # Optimistic: if anyone else writes these stories meanwhile (a single-story
            # rebuild, an overlapping projector), EXEC fails and the runner retries the batch.
            await pipe.watch(*keys)
            stored = cast(
                list[bytes | None], await pipe.mget([self.models.story(s) for s in by_story])
            )
            work = [
                self._advance(story, self.models.decode_state(story, raw), items)
                for (story, items), raw in zip(by_story.items(), stored, strict=True)
            ]
            await self._refold([w for w in work if w.refold_to])
            failures = {w.failed.ref: w.error for w in work if w.failed and w.error}
            acked = [d for w in work for d in w.acked]
            if acked:
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                changes = [Change(w.old, w.state, w.refolded) for w in work if w.changed]
                self.models.write_many(pipe, changes)
                streams: dict[int, list[Delivery]] = {}
                for d in acked:
                    streams.setdefault(d.partition, []).append(d)
                for partition, done in streams.items():
                    last = max(done, key=lambda d: tuple(map(int, d.entry_id.split("-"))))
                    pipe.hset(self.models.checkpoint, str(partition), last.entry_id)
                    pipe.xack(done[0].stream, self.group, *[d.entry_id for d in done])
                    # The new checkpoint, as a position: a watcher needs no read to know it.
                    pipe.publish(self.models.changes, f"{partition}:{last.entry_id}")
                await pipe.execute()
                PROJECTED.inc(len(acked))
        return failures

    def _advance(self, story: str, old: StoryState, items: list[Delivery]) -> _Work:
        """Fold what can be folded in place; note where a refold from history must start."""
        work = _Work(story, old, copy_state(old))
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
                w.state = self.project(w.story, [decode_record(r) for r in history])
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
