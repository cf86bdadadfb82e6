"""What each subscription is owed of a log that is copied elsewhere (`dateline backup`
and `restore`, `dateline migrate`), and putting it back there.

A copy's fan-out starts after the history it copied: the copy's subscribers are not
sent it again. But some of that history had not reached a subscription's receiver: in
its outbox (a paused subscription, a receiver down), held where the fan-out's group
parked it, in its dead letters, or not fanned out to it yet (past its mark, in the
partition's log). Read in one step a subscription (its keys share a slot), right after
the copy's cut, those are what it is owed; a copy puts them back in the new outbox and
dead letters at their new positions.

A receiver that acknowledges one after the read gets it again from the copy, with its
`webhook-id` (its position; a new one if the copy moved it to another partition):
receivers drop ids they have seen. Nothing it had not acknowledged is lost.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import redis.asyncio as aioredis

from dateline.domain.positions import Position, stream_id
from dateline.store.layout import Keys
from dateline.store.subscriptions import Parked, Subscription, Subscriptions


class _Head(msgspec.Struct):
    subject: str
    type: str


_head = msgspec.json.Decoder(_Head).decode
parked_letter = msgspec.json.Decoder(Parked).decode
"""A dead letter's `Parked`, as JSON in a backup's `delivery` line."""


@dataclass
class Due:
    """What one subscription is owed, gathered as a copy reads the log (`seen`)."""

    sub: Subscription
    since: dict[int, tuple[int, int]]
    """Partition -> its mark (fanned out up to there: in the outbox, held, parked or
    acknowledged), or where the subscription began if later or none."""
    send: set[str]
    """Positions owed, in no order: `owed` gives them in the log's."""
    parked: list[tuple[str, str]]
    """Its dead letters: (position, `Parked` as JSON)."""

    def past(self, partition: int, at: tuple[int, int]) -> bool:
        """Whether an update there is past what was fanned out to it (or when it began)."""
        since = self.since.get(partition)
        return since is None or at > since

    def owed(self) -> list[str]:
        return sorted(self.send, key=log_order)


def seen(dues: Sequence[Due], partition: int, at: tuple[int, int], record: bytes) -> bool:
    """A record of the log at `partition`, stream id `at`: added to the `send` of each
    subscription it is owed to (past its mark, and its filters let it through); whether
    any. Most nights every subscription is fanned out past the cut: no head is read."""
    owing = [due for due in dues if due.past(partition, at)]
    if not owing:
        return False
    head = _head(record)
    taken = False
    for due in owing:
        if due.sub.filters(head.subject, head.type):
            due.send.add(f"{partition}:{at[0]}-{at[1]}")
            taken = True
    return taken


class Owing(Protocol):
    """What is owed to one subscription: a `Due`, or a backup's `delivery` line."""

    @property
    def send(self) -> Collection[str]: ...

    @property
    def parked(self) -> Sequence[tuple[str, str]]: ...


def positions(owing: Iterable[Owing]) -> set[str]:
    """Every position owed, to be sent or parked."""
    return {x for o in owing for x in (*o.send, *(p for p, _ in o.parked))}


def log_order(position: str) -> tuple[tuple[int, int], int]:
    """Stream-id order across partitions, as a backup's updates go."""
    parsed = Position.parse(position)
    return parsed.id, parsed.partition


async def dues(client: aioredis.Redis, keys: Keys, cut: dict[int, str] | None) -> list[Due]:
    """Each subscription's deliveries as they stand, of the updates up to `cut` (None:
    all, the log being frozen)."""
    registry = Subscriptions(client, keys)
    upto = None if cut is None else {p: stream_id(eid) for p, eid in cut.items()}

    def within(position: str) -> bool:
        if upto is None:
            return True
        parsed = Position.parse(position)
        last = upto.get(parsed.partition)
        return last is not None and parsed.id <= last

    found = []
    for sub in await registry.all():
        standing = await registry.standing(sub.name)
        since = {int(p): stream_id(e) for p, e in sub.starts.items()}
        for p, mark in standing.marks.items():
            since[p] = max(since.get(p, (0, 0)), stream_id(mark))
        found.append(
            Due(
                sub,
                since=since,
                send={x for x in (*standing.queued, *standing.held) if within(x)},
                parked=[(x, why) for x, why in standing.parked if within(x)],
            )
        )
    return found


@dataclass
class Placing:
    """Where a copy put the records owed: give `placed` to `migrate.write_log`.

    `known`: positions owed before the copy reads the log (a backup's `delivery` lines,
    or what stood in the outboxes); `dues`: subscriptions still to `see` each record
    (a migration reads the log once, and learns what is owed as it copies)."""

    known: set[str]
    dues: Sequence[Due] = ()
    found: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    """Position before -> (position after, record)."""

    def placed(self, partition: int, at: tuple[int, int], after: str, record: bytes) -> None:
        before = f"{partition}:{at[0]}-{at[1]}"
        if seen(self.dues, partition, at, record) or before in self.known:
            self.found[before] = (after, record)

    def missing(self) -> list[str]:
        """What is owed (known before, or seen since) and the copy did not place: an
        outbox naming what the log lacks, in log order."""
        owed = self.known | positions(self.dues)
        return sorted(owed - self.found.keys(), key=log_order)

    async def put_back(
        self,
        target: aioredis.Redis,
        to: Keys,
        name: str,
        send: Sequence[str],
        parked: Sequence[tuple[str, str]],
    ) -> tuple[int, int] | None:
        """`name`'s owed updates into its outbox on `target`, its dead letters into its
        dead letters, at their new positions: how many of each. Those the copy did not
        place (`missing`: the caller says so) are left out. None, and nothing written,
        where the copied settings hold no such subscription: removed after its
        deliveries were read, its outbox there would be keys no service reads."""
        subscriptions = Subscriptions(target, to)
        if await subscriptions.get(name) is None:
            return None
        queued = [self._owed(x) for x in send if x in self.found]
        letters = []
        for x, why in parked:
            if x not in self.found:
                continue
            story, after, record = self._owed(x)
            letter = msgspec.structs.replace(parked_letter(why), position=after)
            letters.append((story, after, record, letter))
        await subscriptions.put_back(name, queued, letters)
        return len(queued), len(letters)

    def _owed(self, before: str) -> tuple[str, str, bytes]:
        after, record = self.found[before]
        return _head(record).subject, after, record
