"""The validator: updates from feeds' Redis inboxes into the log; refusals into `rejected`.

A feed that speaks Redis appends to its own inbox (the ACL in deploy/ lets it do
nothing else):

    XADD <prefix>:inbox:<feed> * __data__ '<one CloudEvent as JSON>'

Each entry goes through the same checks and append path as HTTP ingest. Refused
ones go to `<prefix>:rejected` with the field and the reason, and so does a duplicate
whose content is not its original's (an id used again: field `id`). Both kinds are
acknowledged in one MULTI after the append, so an entry is in the log, or in
`rejected`, or still pending, never lost. Appends are idempotent by (source, id),
so re-processing after a crash is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from dateline.ingest.admit import admit
from dateline.ingest.credentials import Credentials, Refusal
from dateline.ingest.outcomes import counting, reused
from dateline.runtime import Delivery, Runner, RunnerConfig
from dateline.runtime.metrics import UPDATES
from dateline.store import refused as refusals
from dateline.store.connection import UNREACHABLE, is_cluster
from dateline.store.layout import Keys, feed_of_inbox, inbox_key
from dateline.store.log import Log
from dateline_schemas import MAX_BATCH_BYTES, Decoded

log = structlog.get_logger("dateline.validator")

GROUP = "validator"


@dataclass(frozen=True, slots=True)
class _Refusal:
    delivery: Delivery
    field: str
    reason: str


class ValidatorHandler:
    def __init__(self, log: Log, credentials: Credentials, prefix: str) -> None:
        self.log, self.credentials, self.prefix = log, credentials, prefix

    async def settle(self, streams: dict[int, str]) -> None:
        """It keeps no checkpoint: an inbox entry is done once acknowledged."""

    async def handle(self, deliveries: list[Delivery]) -> dict[str, BaseException]:
        """Never fails an entry: what cannot go into the log goes into `rejected`."""
        if not deliveries:
            return {}
        inboxes: dict[str, list[Delivery]] = {}
        for d in deliveries:
            inboxes.setdefault(d.stream, []).append(d)
        refused: list[_Refusal] = []
        for stream, mine in inboxes.items():
            refused += await self._move(feed_of_inbox(stream), mine)
        # On a cluster `rejected` and the inboxes are in other slots: no transaction, so
        # the refusals are written first and the inbox entries let go of after.
        cluster = is_cluster(self.log.redis)
        pipe = self.log.redis.pipeline(transaction=not cluster)
        for r in refused:
            d = r.delivery
            refusals.add(
                pipe,
                self.prefix,
                feed=feed_of_inbox(d.stream),
                entry=d.entry_id,
                raw=d.raw,
                field=r.field,
                reason=r.reason,
            )
        if cluster and refused:
            await pipe.execute()
            pipe = self.log.redis.pipeline(transaction=False)
        for stream, mine in inboxes.items():
            ids = [d.entry_id for d in mine]
            pipe.xack(stream, GROUP, *ids)
            # In the log, or in `rejected`: the inbox need not hold it any more.
            pipe.xdel(stream, *ids)
        await pipe.execute()
        return {}

    async def _move(self, feed_name: str, deliveries: list[Delivery]) -> list[_Refusal]:
        """Append one inbox's valid updates to the log; returns the refused ones."""
        feed = await self.credentials.get(feed_name)
        refused: list[_Refusal] = []
        valid: list[tuple[Delivery, Decoded]] = []
        for d in deliveries:
            if feed is None or feed.revoked:
                refused.append(
                    _Refusal(d, "feed", f"feed {feed_name!r} is not registered or was revoked")
                )
            elif not d.raw:
                refused.append(
                    _Refusal(
                        d, "entry", "no __data__ field: XADD <inbox> * __data__ '<CloudEvent JSON>'"
                    )
                )
            else:
                match admit(feed, d.raw):
                    case Refusal(field, reason):
                        refused.append(_Refusal(d, field, reason))
                    case decoded:
                        valid.append((d, decoded))
        # Refused before the log saw them: invalid, or outside the feed's credentials.
        UPDATES.labels("validator", "refused").inc(len(refused))
        for chunk in _by_size(valid):
            results = await self.log.append(
                [decoded for _, decoded in chunk], editor=feed is not None and feed.editor
            )
            for result in results:
                UPDATES.labels("validator", result.status).inc()
            reused(log, "validator", feed_name, results)
            # An id used again for other content lands nothing either: its feed reads
            # `rejected`, and nowhere else would learn it.
            refused += [
                _Refusal(d, r.field or ("id" if r.differs else "update"), r.reason or r.status)
                for (d, _), r in zip(chunk, results, strict=True)
                if r.refused or r.differs
            ]
        return refused


def _by_size(items: Sequence[tuple[Delivery, Decoded]]) -> list[list[tuple[Delivery, Decoded]]]:
    """Batches within the log's 4 MiB limit (each update is at most 64 KiB)."""
    chunks: list[list[tuple[Delivery, Decoded]]] = []
    size = MAX_BATCH_BYTES
    for item in items:
        if size + len(item[1].body) > MAX_BATCH_BYTES - 4096:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += len(item[1].body) + 1
    return chunks


async def create_validator(
    client: aioredis.Redis,
    keys: Keys,
    consumer: str,
    feeds: list[str] | None = None,
    *,
    min_replicas: int = 0,
    replica_timeout_ms: int = 1000,
) -> Runner:
    """A runner over the inboxes of `feeds` (default: every registered, unrevoked feed).
    Its appends wait for `min_replicas` (`Log`); an inbox entry is acknowledged only
    once they confirmed its append."""
    credentials = Credentials(client, keys.prefix)
    if feeds is None:
        feeds = [f.name for f in await credentials.feeds() if not f.revoked]
    log = Log(client, keys, min_replicas=min_replicas, replica_timeout_ms=replica_timeout_ms)
    await log.check_partitions()
    await log.resolve_replicas()
    handler = ValidatorHandler(log, credentials, keys.prefix)
    counting("validator")
    streams = [inbox_key(keys.prefix, f) for f in feeds]
    config = RunnerConfig(group=GROUP, consumer=consumer)
    return Runner(client, keys, config, handler, lambda raw: "inbox", streams=streams)


async def follow_feeds(
    runner: Runner, client: aioredis.Redis, prefix: str, stop: asyncio.Event, every_s: float = 2.0
) -> None:
    """Add the inbox of every feed registered after start, until `stop`."""
    credentials = Credentials(client, prefix)
    while not stop.is_set():
        try:
            feeds = [f.name for f in await credentials.feeds() if not f.revoked]
        except UNREACHABLE:  # the runner says so; look again in a while
            feeds = []
        except Exception:  # it ended the following, unsaid until the process stopped
            log.exception("reading the feeds failed; new feeds wait, trying again")
            feeds = []
        for stream in runner.follow([inbox_key(prefix, f) for f in feeds]):
            log.info("following a new feed's inbox", stream=stream)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
