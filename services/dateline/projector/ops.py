"""What on-call engineers do to a projection: rebuild a story, redrive a parked one.

Where it stands (lag, leases, parked stories) is `dateline.runtime.status`."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from dateline.domain import project
from dateline.runtime import DeadLetters
from dateline.store.connection import is_cluster
from dateline.store.doorbell import bell
from dateline.store.log import Log
from dateline.store.readmodels import ReadModels


@dataclass(frozen=True)
class Rebuilt:
    version: int
    """The story's version, folded from its history: 0 where the log has no update of it."""
    forgotten: bool = False
    """The log has none, and the read models held the story: they hold it no more."""


async def rebuild_story(
    log: Log, models: ReadModels, story: str, views: aioredis.Redis | None = None
) -> Rebuilt:
    """Fold `story` from the log into the read models of `models` (in `views`, the store
    of read models, if apart from the log's server).

    WATCHes the story's read model so that a projector writing it at the same time
    makes this attempt start over rather than be overwritten by an older state. A story
    the log has no update of is not written as an empty one (a rebuild of every story
    would hold none), and where the read models hold it, it is taken out of them.
    """
    store = log.redis if views is None else views
    while True:
        async with store.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*models.keys_of(story))
                old, raw = await models.recall(pipe, story)
                history = await log.read_story(story)
                if not history and raw is None:  # nothing to write (the block unwatches)
                    return Rebuilt(0)
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                if history:
                    new = project(story, history)
                    models.write(pipe, old, new)
                else:
                    models.forget(pipe, old)
                await pipe.execute()
            except aioredis.WatchError:
                continue
            # After the transaction, not in it: on a cluster a transaction holds the keys
            # of one slot, and a channel is none. A ring missed in between costs readers
            # a second (they look every second without one).
            partition = log.keys.partition(story)
            verb, channel = bell(is_cluster(store), log.keys, partition)  # as commits ring
            publish = store.spublish if verb == "SPUBLISH" else store.publish
            await publish(channel, str(partition))
            return Rebuilt(new.version) if history else Rebuilt(0, forgotten=True)


async def redrive(
    log: Log,
    models: ReadModels,
    dead: DeadLetters,
    story: str,
    views: aioredis.Redis | None = None,
) -> tuple[int, int]:
    """After a fix: rebuild the parked story from the log, then release it. (version, dropped)."""
    rebuilt = await rebuild_story(log, models, story, views)
    return rebuilt.version, await dead.release(story)
