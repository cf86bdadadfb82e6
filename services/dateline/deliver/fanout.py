"""From the log to the outboxes: each update goes to every subscription that wants it.

A batch handler of the kit (`dateline.kit`): each subscription's share of a batch goes
into its outbox in one script call (`store/scripts/fanout.lua`), then the kit
acknowledges the batch. The two are not one transaction (on a cluster they are other
slots, and one server does it the same way): a batch handled again after a crash
between them finds each subscription's mark past it, so an update reaches each
outbox exactly once.

An update whose fan-out keeps failing is parked in the group's dead letters, with its
story's later updates behind it, and the marks move past them as other stories go
out. So before the kit parks them, `parking` notes in each subscription that wants them
those its outbox lacks (`store/scripts/hold.lua`), and a redrive (`dateline dlq redrive
STORY --group deliver`) adds those, each once (`store/scripts/refan.lua`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
import structlog

from dateline.kit import Batch, LogEntry
from dateline.runtime.metrics import FANNED_OUT
from dateline.store.subscriptions import Fields, Subscription, Subscriptions
from dateline.store.together import gathered


class _Head(msgspec.Struct):
    subject: str
    type: str


_head = msgspec.json.Decoder(_Head).decode
log = structlog.get_logger("dateline.deliver")
_Step = Callable[
    [Subscriptions, Subscription, list[tuple[str, Fields]], dict[str, int]], Awaitable[int]
]
"""A subscription's step of a batch: the registry, the subscription, its share (log entry
id, outbox fields), and the replicas to wait for (`Subscriptions.to_outbox`)."""


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
        if batch.redrive:
            added = await self._each(
                batch.entries, lambda r, sub, share, kw: r.refan(sub, share, **kw)
            )
            log.info(
                "redriven updates fanned out",
                partition=batch.partition,
                updates=len(batch.entries),
                added=added,
            )
        else:
            added = await self._each(
                batch.entries,
                lambda r, sub, share, kw: r.to_outbox(sub, batch.partition, share, **kw),
            )
        FANNED_OUT.inc(sum(added.values()))
        # Returning unacknowledged: the kit acknowledges the batch now.

    async def parking(self, batch: Batch) -> None:
        """The kit is about to park these entries: note, in each subscription that wants
        them, those its outbox lacks, for a redrive to add. An entry whose head cannot be
        read was wanted by nobody: it goes to no outbox, redriven or not."""
        readable = [e for e in batch.entries if _readable(e.raw)]
        await self._each(
            readable,
            lambda r, sub, share, kw: r.hold(sub, batch.partition, [i for i, _ in share], **kw),
        )

    async def _each(self, entries: list[LogEntry], step: _Step) -> dict[str, int]:
        """`step` for each subscription that wants any of `entries`, side by side, with
        its share of them; what each returned (how many it added or noted), by name."""
        registry = self.subscriptions()
        # Read after the entries were: a subscription added before an entry was
        # appended is found (`Subscriptions.add`).
        routed = route(await registry.all(), entries)
        if not routed:
            return {}
        wanted = await self.replicas() if registry.cluster else 0
        kw = {"replicas": wanted, "replica_timeout_ms": self.replica_timeout_ms}
        # Every step landed or failed before the kit retries or parks: `parking` asks
        # each outbox what it lacks, and one still being written would be noted as missed.
        done = await gathered(*(step(registry, sub, share, kw) for sub, share in routed))
        return {sub.name: n for (sub, _), n in zip(routed, done, strict=True)}


def _readable(raw: bytes) -> bool:
    try:
        _head(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return True
