"""Turn a batch of one partition into read-model writes: decode, call the projection, write.

Exactly once: a story's state carries the version it has applied, so a
redelivered update (version <= state.version) is acknowledged and not applied
again; the states, the checkpoint and the acknowledgements go in one MULTI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import redis.asyncio as aioredis

from dateline.consumer import Delivery
from dateline.log import Log
from dateline.projection import advance_in_place, copy_state, project
from dateline.projection.state import StoryState
from dateline.projector.readmodels import ReadModels
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
        by_story: dict[str, list[Delivery]] = {}
        for d in deliveries:
            by_story.setdefault(d.key, []).append(d)
        stories = list(by_story)
        keys = [key for s in stories for key in self.models.keys_of(s)]
        async with self.client.pipeline(transaction=True) as pipe:
            # Optimistic: if anyone else writes these stories meanwhile (a single-story
            # rebuild, an overlapping projector), EXEC fails and the runner retries the batch.
            await pipe.watch(*keys)
            raw = cast(list[bytes | None], await pipe.mget(keys))
            failures: dict[str, BaseException] = {}
            acked: list[Delivery] = []
            changed: list[tuple[StoryState, StoryState]] = []
            for i, story in enumerate(stories):
                old = self.models.decode_state(story, raw[2 * i], raw[2 * i + 1])
                state = copy_state(old)  # once per story per batch; folded into in place
                applied = False
                for d in by_story[story]:
                    try:
                        state, did = await self._apply(story, state, decode_record(d.raw))
                    except Exception as exc:  # the runner retries, then parks it
                        failures[d.entry_id] = exc
                        break
                    acked.append(d)
                    applied = applied or did
                if applied:
                    changed.append((old, state))
            if acked:
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                for old, new in changed:
                    self.models.write(pipe, old, new)
                last = max(acked, key=lambda d: tuple(map(int, d.entry_id.split("-"))))
                pipe.hset(self.models.checkpoint, str(last.partition), last.entry_id)
                pipe.xack(acked[0].stream, self.group, *[d.entry_id for d in acked])
                await pipe.execute()
        return failures

    async def _apply(
        self, story: str, state: StoryState, update: Update
    ) -> tuple[StoryState, bool]:
        """(the state after `update`, whether it changed anything)."""
        version = update.version or 0
        if version <= state.version:
            return state, False  # redelivered: applied already
        if version == state.version + 1 and self.advance(state, update):
            return state, True
        self.refolds += 1
        return self.project(story, await self.log.read_story(story, to_version=version)), True
