"""From the log to the outboxes: each update goes to every subscription that wants it.

A batch handler of the kit (`dateline.kit`): each subscription's share of a batch goes
into its outbox in one script call (`store/scripts/fanout.lua`), then the kit
acknowledges the batch. The two are not one transaction (on a cluster they are other
slots, and one server does it the same way): a batch handled again after a crash
between them finds each subscription's mark past it, so an update reaches each
outbox exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec

from dateline.kit import Batch, LogEntry
from dateline.runtime.metrics import FANNED_OUT
from dateline.store.subscriptions import Fields, Subscription, Subscriptions


class _Head(msgspec.Struct):
    subject: str
    type: str


_head = msgspec.json.Decoder(_Head).decode


def route(
    subs: list[Subscription], entries: list[LogEntry]
) -> list[tuple[Subscription, list[tuple[str, Fields]]]]:
    """Each subscription that wants any of `entries` (of one partition, in log order),
    with the (log entry id, outbox fields) of those it wants, in their order."""
    wanted: dict[str, list[tuple[str, Fields]]] = {}
    for entry in entries:
        head = _head(entry.raw)
        for sub in subs:
            if sub.wants(entry.partition, entry.entry_id, head.subject, head.type):
                fields = {
                    b"story": head.subject.encode(),
                    b"position": entry.position.encode(),
                    b"record": entry.raw,
                }
                wanted.setdefault(sub.name, []).append((entry.entry_id, fields))
    return [(sub, wanted[sub.name]) for sub in subs if sub.name in wanted]


async def _none() -> int:
    return 0


class Fanout:
    def __init__(
        self,
        subscriptions: Callable[[], Subscriptions],
        replicas: Callable[[], Awaitable[int]] = _none,
        replica_timeout_ms: int = 1000,
    ) -> None:
        """`subscriptions`: the registry on the kit's own client, once the kit started.
        `replicas`: how many replicas must have a subscription's outbox entries before
        the batch is acknowledged, on a cluster (`Subscriptions.to_outbox`)."""
        self.subscriptions, self.replicas = subscriptions, replicas
        self.replica_timeout_ms = replica_timeout_ms

    async def __call__(self, batch: Batch) -> None:
        registry = self.subscriptions()
        # Read after the entries were: a subscription added before an entry was
        # appended is found (`Subscriptions.add`).
        routed = route(await registry.all(), batch.entries)
        if not routed:
            return
        wanted = await self.replicas() if registry.cluster else 0
        added = await asyncio.gather(
            *(
                registry.to_outbox(
                    sub,
                    batch.partition,
                    entries,
                    replicas=wanted,
                    replica_timeout_ms=self.replica_timeout_ms,
                )
                for sub, entries in routed
            )
        )
        FANNED_OUT.inc(sum(added))
        # Returning unacknowledged: the kit acknowledges the batch now.
