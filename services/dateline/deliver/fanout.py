"""From the log to the outboxes: each update goes to every subscription that wants it.

A batch handler of the kit (`dateline.kit`): the outbox entries and the log's
acknowledgement are one transaction, so an update reaches each outbox exactly once.
"""

from __future__ import annotations

import msgspec
from redis.exceptions import WatchError

from dateline.kit import Batch, LogEntry
from dateline.runtime.metrics import FANNED_OUT
from dateline.store.subscriptions import Subscription, Subscriptions

Fields = dict[bytes, bytes]


class _Head(msgspec.Struct):
    subject: str
    type: str


_head = msgspec.json.Decoder(_Head).decode


def route(subs: list[Subscription], entries: list[LogEntry]) -> list[tuple[str, Fields]]:
    """(subscription, outbox entry) for every update and subscription that wants it."""
    out: list[tuple[str, Fields]] = []
    for entry in entries:
        head = _head(entry.raw)
        for sub in subs:
            if sub.wants(entry.partition, entry.entry_id, head.subject, head.type):
                fields = {
                    b"story": head.subject.encode(),
                    b"position": entry.position.encode(),
                    b"record": entry.raw,
                }
                out.append((sub.name, fields))
    return out


class Fanout:
    def __init__(self, subscriptions: Subscriptions) -> None:
        self.subscriptions = subscriptions

    async def __call__(self, batch: Batch) -> None:
        registry = self.subscriptions
        async with registry.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    # Watched: a subscription removed meanwhile gets no outbox back.
                    await pipe.watch(registry.key)
                    subs = await registry.all_in(pipe)
                    routed = route(subs, batch.entries)
                    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                    for name, fields in routed:
                        pipe.xadd(registry.state(name).outbox, fields)  # type: ignore[arg-type]
                    batch.ack_in(pipe)
                    await pipe.execute()
                    FANNED_OUT.inc(len(routed))
                    return
                except WatchError:
                    continue
