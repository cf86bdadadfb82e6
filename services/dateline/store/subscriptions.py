"""Subscriptions: who is told of which updates, and each one's delivery state in Redis.

A subscription is a URL with filters and a signing secret. The delivery service fans
each matching update of the log out into the subscription's outbox (a stream), then
delivers the outbox: an entry leaves it when the receiver acknowledged it (2xx) or
when it is given up on and parked in the subscription's dead letters. `redrive` puts
parked entries back, in their order. Keys: `store/layout.py`, `SubscriptionKeys`.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal, cast

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError
from redis.typing import EncodableT

from dateline.domain.positions import Position, stream_id
from dateline.store import scripts
from dateline.store.connection import appender_of, is_cluster, sent_whole
from dateline.store.layout import (
    Keys,
    SubscriptionKeys,
    subscription_secrets_key,
    subscriptions_key,
)
from dateline.store.replies import as_text, as_text_or_none

Mode = Literal["structured", "binary"]
SECRET_PREFIX = "whsec_"  # noqa: S105 - Standard Webhooks' marker of a secret, not one
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
TOMBSTONE_S = 86_400
"""How long a removed subscription's tombstone stays: far longer than a fan-out takes."""
_PREFIX = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


FAN_OUT = scripts.load("fanout")


class SubscriptionExists(ValueError):
    pass


class OutboxNotReplicated(RedisTimeoutError):
    """A replica did not confirm outbox entries in time: an outage to wait out (the kit
    retries the batch, and does not count it against the update)."""


class Subscription(msgspec.Struct, frozen=True):
    name: str
    url: str
    story_prefixes: list[str] = []
    """Empty: every story."""
    types: list[str] = []
    """Empty: every update type."""
    mode: Mode = "structured"
    paused: bool = False
    allow_private: bool = False
    """Deliver to loopback and private addresses too (`--allow-private`)."""
    created: float = 0.0
    starts: dict[str, str] = {}
    """Partition -> its last log entry when the subscription was added: it is told of
    what comes after, not of the history."""

    def wants(self, partition: int, entry_id: str, story: str, type_: str) -> bool:
        if not self.filters(story, type_):
            return False
        start = self.starts.get(str(partition))
        return start is None or stream_id(entry_id) > stream_id(start)

    def filters(self, story: str, type_: str) -> bool:
        """Whether its story prefixes and types let this update through: `wants`
        without the question of when it was added."""
        if self.story_prefixes and not story.startswith(tuple(self.story_prefixes)):
            return False
        return not self.types or type_ in self.types

    @property
    def stamp(self) -> str:
        """Which subscription of this name it is: one removed and added again is another."""
        return repr(self.created)


class RetryState(msgspec.Struct):
    """An outbox entry that failed: survives a restart of the delivery service."""

    attempts: int
    first_failed: float
    """Unix time of the first failure: parked once `give_up_after` has passed since."""
    next_at: float
    """Unix time of the next attempt."""
    last_error: str


class Parked(msgspec.Struct):
    entry: str
    story: str
    position: str
    error: str
    attempts: int
    parked_at: float
    behind: str = ""


class Standing(msgspec.Struct):
    """A subscription's deliveries as they stand (`Subscriptions.standing`)."""

    marks: dict[int, str]
    """Partition -> the last log entry fanned out to it."""
    queued: list[str]
    """The positions in its outbox, oldest first: not yet acknowledged by the receiver."""
    held: list[str]
    """Positions the fan-out's group parked before they reached the outbox."""
    parked: list[tuple[str, str]]
    """Its dead letters: (position, `Parked` as JSON), oldest first."""


Fields = dict[bytes, bytes]
_encode = msgspec.json.Encoder().encode
_decode_sub = msgspec.json.Decoder(Subscription).decode
_decode_retry = msgspec.json.Decoder(RetryState).decode


class Subscriptions:
    """The registry (`<prefix>:subs`) and every subscription's delivery state."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client, self.keys = client, keys
        self.key = subscriptions_key(keys.prefix)
        self.secrets_key = subscription_secrets_key(keys.prefix)
        self.cluster = is_cluster(client)
        self._fan_out = scripts.Script(client, FAN_OUT)
        self._hold = scripts.bound(client, "hold")
        self._refan = scripts.bound(client, "refan")

    def state(self, name: str) -> SubscriptionKeys:
        return SubscriptionKeys(self.keys.prefix, name, tagged=self.cluster)

    async def add(
        self,
        url: str,
        *,
        name: str | None = None,
        story_prefixes: Iterable[str] = (),
        types: Iterable[str] = (),
        mode: Mode = "structured",
        allow_private: bool = False,
        known_types: Iterable[str] = (),
    ) -> tuple[Subscription, str]:
        """Register a subscription; it is told of updates appended from now on. Returns it
        and its signing secret: `whsec_` and base64 of 32 random bytes (Standard
        Webhooks), kept readable (the service signs with it) in a hash of its own."""
        name = name or "sub-" + secrets.token_hex(4)
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"subscription name: expected 1 to 63 of a-z, 0-9 and '-', starting with a "
                f"letter or digit, got {name!r}"
            )
        for prefix in story_prefixes:
            if not _PREFIX.fullmatch(prefix):
                raise ValueError(
                    f"story prefix: expected 1 to 128 of a-z, 0-9 and '-' (the start of a "
                    f"story id), got {prefix!r}"
                )
        known = set(known_types)
        for type_ in types:
            if known and type_ not in known:
                raise ValueError(
                    f"type: {type_!r} is no update type; the types are {', '.join(sorted(known))}"
                )
        # Where the log stands now: entries after these are the subscriber's. The fan-out
        # reads the registry after it read an entry, so one appended after this returns
        # finds the subscription (and an entry of the moment between is not sent).
        pipe = self.client.pipeline(transaction=False)
        for p in range(self.keys.partitions):
            pipe.xrevrange(self.keys.log(p), count=1)
        lasts = await pipe.execute()
        starts = {str(p): as_text(last[0][0]) for p, last in enumerate(lasts) if last}
        secret = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
        sub = Subscription(
            name,
            url,
            list(story_prefixes),
            list(types),
            mode,
            allow_private=allow_private,
            created=time.time(),
            starts=starts,
        )
        # The secret first: the service finds a subscription only once its settings are in.
        if await self.client.hexists(self.key, name):
            raise SubscriptionExists(f"subscription {name!r} exists already")
        await self.client.hset(self.secrets_key, name, secret)
        if not await self.client.hsetnx(self.key, name, _encode(sub)):
            raise SubscriptionExists(f"subscription {name!r} exists already")
        return sub, secret

    async def secret(self, name: str) -> str | None:
        raw = await self.client.hget(self.secrets_key, name)
        return as_text_or_none(raw)

    async def all(self) -> list[Subscription]:
        """Every subscription, by name."""
        raw = cast(dict[bytes, bytes], await self.client.hgetall(self.key))
        return sorted((_decode_sub(v) for v in raw.values()), key=lambda s: s.name)

    async def get(self, name: str) -> Subscription | None:
        raw = await self.client.hget(self.key, name)
        return None if raw is None else _decode_sub(raw)

    async def set_paused(self, name: str, paused: bool) -> bool:
        """Pause (updates still queue up in its outbox) or resume; False if unknown."""
        async with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self.key)
                    raw = await pipe.hget(self.key, name)
                    if raw is None:
                        return False
                    sub = msgspec.structs.replace(_decode_sub(raw), paused=paused)
                    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                    pipe.hset(self.key, name, _encode(sub))
                    await pipe.execute()
                    return True
                except WatchError:
                    continue

    async def remove(self, name: str) -> bool:
        """Forget a subscription and everything queued for it.

        Its own keys go first, in one step, leaving a tombstone that a fan-out under way
        (it read the registry before) heeds: it adds nothing to the outbox, which would
        otherwise be made anew. Then the registry's entry and the secret. On a cluster
        those are other slots; on one server the same order keeps one way of doing it."""
        sub = await self.get(name)
        keys = self.state(name)
        own = self.client.pipeline(transaction=True)  # one slot: the name is its tag
        own.delete(*keys.all())
        if sub is not None:
            own.set(keys.removed, sub.stamp, ex=TOMBSTONE_S)
        await own.execute()
        pipe = self.client.pipeline(transaction=not self.cluster)
        pipe.hdel(self.key, name)
        pipe.hdel(self.secrets_key, name)
        removed, _ = await pipe.execute()
        return bool(removed)

    async def to_outbox(
        self,
        sub: Subscription,
        partition: int,
        entries: list[tuple[str, Fields]],
        *,
        replicas: int = 0,
        replica_timeout_ms: int = 1000,
    ) -> int:
        """Add a partition's `entries` (log entry id, outbox fields; in log order) to the
        subscription's outbox, but those at or before its mark for the partition (added
        before: a batch handled again); how many were added. Nothing once removed.

        On a cluster, then wait until `replicas` of the subscription's node have them
        (`WAIT`, on the node that took them), else `OutboxNotReplicated`: the log's
        acknowledgement that follows is another node's, and a failover must not keep it
        and lose these. On one server the acknowledgement follows on the same server,
        and a replica that has it has these."""
        keys = self.state(sub.name)
        args: list[str | bytes | int] = [sub.stamp, partition]
        for entry_id, fields in entries:
            args += [entry_id, fields[b"story"], fields[b"position"], fields[b"record"]]
        on = [keys.outbox, keys.marks, keys.removed]
        return await self._run(self._fan_out, sub.name, on, args, replicas, replica_timeout_ms)

    async def hold(
        self,
        sub: Subscription,
        partition: int,
        entry_ids: list[str],
        *,
        replicas: int = 0,
        replica_timeout_ms: int = 1000,
    ) -> int:
        """Before the fan-out's group parks these entries of a partition (in log order):
        note those the subscription's outbox lacks (after its mark), for `refan`; how
        many. Replicated on a cluster as `to_outbox` is: the dead letters that follow are
        another node's."""
        keys = self.state(sub.name)
        on = [keys.marks, keys.held, keys.removed]
        args: list[str | bytes | int] = [sub.stamp, partition, *entry_ids]
        return await self._run(self._hold, sub.name, on, args, replicas, replica_timeout_ms)

    async def refan(
        self,
        sub: Subscription,
        entries: list[tuple[str, Fields]],
        *,
        replicas: int = 0,
        replica_timeout_ms: int = 1000,
    ) -> int:
        """Redriven entries (log entry id, outbox fields; in log order): add to the outbox
        those `hold` noted, each once, whatever the mark; how many were added."""
        keys = self.state(sub.name)
        args: list[str | bytes | int] = [sub.stamp]
        for _, fields in entries:
            args += [fields[b"position"], fields[b"story"], fields[b"record"]]
        on = [keys.outbox, keys.held, keys.removed]
        return await self._run(self._refan, sub.name, on, args, replicas, replica_timeout_ms)

    async def held(self, name: str) -> list[str]:
        """The positions of parked updates a redrive would add to this outbox."""
        raw = cast(list[bytes], await self.client.hkeys(self.state(name).held))
        return sorted((as_text(p) for p in raw), key=Position.parse)

    async def forget_held(self, positions: list[str]) -> int:
        """Parked updates of the fan-out that ops discarded: no subscription is owed them
        now. How many notes went."""
        if not positions:
            return 0
        gone = 0
        for sub in await self.all():  # each its own slot on a cluster
            gone += int(await self.client.hdel(self.state(sub.name).held, *positions))
        return gone

    async def _run(
        self,
        script: scripts.Script,
        name: str,
        keys: list[str],
        args: list[str | bytes | int],
        replicas: int,
        replica_timeout_ms: int,
    ) -> int:
        """One of a subscription's scripts; on a cluster, replicated (`to_outbox`)."""
        if not self.cluster:
            return int(await script(keys=keys, args=args))
        cluster = appender_of(self.client)  # its retries are the kit's: a batch again
        await cluster.initialize()
        node = cluster.get_node_from_key(keys[0])
        pipe = cluster.pipeline(transaction=False)
        pipe.execute_command("EVAL", script.text, len(keys), *keys, *args)  # no EVALSHA here
        if replicas > 0:
            pipe.execute_command("WAIT", replicas, replica_timeout_ms, target_nodes=node)
        replies = await pipe.execute()
        if replicas > 0 and int(replies[1]) < replicas:
            raise OutboxNotReplicated(
                f"subscription {name!r}: {int(replies[1])} of {replicas} replicas "
                f"confirmed its write within {replica_timeout_ms} ms; the kit tries the "
                "batch again, which adds nothing twice (the mark, or the held note)"
            )
        return int(replies[0])

    # The outbox: what the delivery service works through.

    async def window(self, name: str, count: int) -> list[tuple[str, dict[bytes, bytes]]]:
        """The oldest `count` entries of the outbox, in order."""
        raw = await self.client.xrange(self.state(name).outbox, count=count)
        return [(as_text(eid), fields) for eid, fields in cast(list[Any], raw)]

    async def retries(self, name: str, entries: Iterable[str]) -> dict[str, RetryState]:
        ids = list(entries)
        if not ids:
            return {}
        found = await self.client.hmget(self.state(name).retries, ids)
        return {e: _decode_retry(v) for e, v in zip(ids, found, strict=True) if v is not None}

    async def parked_stories(self, name: str) -> set[str]:
        return {as_text(s) for s in await self.client.smembers(self.state(name).parked)}

    async def delivered(self, name: str, done: Sequence[tuple[str, int]]) -> None:
        """Receivers acknowledged these (outbox entry, status), the last the newest: out of
        the outbox, counted, in one step."""
        if not done:
            return
        entries = [entry for entry, _ in done]
        keys = self.state(name)
        pipe = self.client.pipeline(transaction=True)
        pipe.xdel(keys.outbox, *entries)
        pipe.hdel(keys.retries, *entries)
        pipe.hincrby(keys.stats, "delivered", len(entries))
        pipe.hset(keys.stats, mapping={"last_status": done[-1][1], "last_delivered": time.time()})
        await pipe.execute()

    async def failed(self, name: str, entry: str, state: RetryState) -> None:
        keys = self.state(name)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(keys.retries, entry, _encode(state))
        pipe.hincrby(keys.stats, "failed_attempts", 1)
        pipe.hset(keys.stats, mapping={"last_error": state.last_error, "last_failed": time.time()})
        await pipe.execute()

    async def park(self, name: str, parkings: list[tuple[str, dict[bytes, bytes], Parked]]) -> None:
        """Give up on entries: out of the outbox into the dead letters, their stories held."""
        if not parkings:
            return
        keys = self.state(name)
        pipe = self.client.pipeline(transaction=True)
        for entry, fields, parked in parkings:
            pipe.xadd(keys.dlq, {**fields, b"parked": _encode(parked)})  # type: ignore[dict-item]
            pipe.sadd(keys.parked, parked.story)
            pipe.xdel(keys.outbox, entry)
            pipe.hdel(keys.retries, entry)
        pipe.hincrby(keys.stats, "parked", len(parkings))
        await pipe.execute()

    async def dead_letters(self, name: str) -> list[tuple[str, Parked]]:
        raw = cast(list[Any], await self.client.xrange(self.state(name).dlq))
        return [
            (as_text(eid), msgspec.json.decode(fields[b"parked"], type=Parked))
            for eid, fields in raw
        ]

    async def request_redrive(self, name: str) -> int:
        """Ask the delivery service to redrive the dead letters; how many there are now.

        The service does it between two windows of the outbox, when nothing of the
        subscription is in flight: it is the only process that moves outbox entries."""
        keys = self.state(name)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(keys.stats, "redrive_requested", time.time())
        pipe.xlen(keys.dlq)
        _, parked = await pipe.execute()
        return int(parked)

    async def redrive_requested(self, name: str) -> bool:
        return bool(await self.client.hexists(self.state(name).stats, "redrive_requested"))

    async def redrive(self, name: str) -> int:
        """Put every parked entry back in the outbox in its order, then the outbox entries
        of the stories they held, and release those stories: their order holds. Only the
        delivery service calls it (`request_redrive`). Returns how many came back."""
        keys = self.state(name)
        async with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    # Watched: the fan-out may append an update of a held story meanwhile.
                    await pipe.watch(keys.dlq, keys.parked, keys.outbox)
                    raw = cast(list[Any], await pipe.xrange(keys.dlq))
                    held = {as_text(s) for s in await pipe.smembers(keys.parked)}
                    queued = cast(list[Any], await pipe.xrange(keys.outbox)) if held else []
                    behind = [(e, f) for e, f in queued if as_text(f.get(b"story", b"")) in held]
                    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                    for eid, fields in raw:
                        pipe.xadd(keys.outbox, {k: v for k, v in fields.items() if k != b"parked"})
                        pipe.xdel(keys.dlq, eid)
                    for eid, fields in behind:
                        pipe.xdel(keys.outbox, eid)
                        pipe.hdel(keys.retries, eid)
                        pipe.xadd(keys.outbox, fields)
                    pipe.delete(keys.parked)
                    pipe.hdel(keys.stats, "redrive_requested")
                    await pipe.execute()
                    return len(raw)
                except WatchError:
                    continue

    async def standing(self, name: str) -> Standing:
        """Where `name`'s deliveries stand, read in one step (its keys share a slot):
        what a backup keeps of them (`store/backup.py`)."""
        keys = self.state(name)
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(keys.marks)
        pipe.xrange(keys.outbox)
        pipe.hkeys(keys.held)
        pipe.xrange(keys.dlq)
        marks, outbox, held, dlq = await pipe.execute()
        return Standing(
            marks={int(as_text(p)): as_text(e) for p, e in cast(dict[Any, Any], marks).items()},
            queued=[as_text(f[b"position"]) for _, f in cast(list[Any], outbox)],
            held=[as_text(p) for p in cast(list[Any], held)],
            parked=[
                (as_text(f[b"position"]), as_text(f[b"parked"])) for _, f in cast(list[Any], dlq)
            ],
        )

    async def put_back(
        self,
        name: str,
        queued: Sequence[tuple[str, str, bytes]],
        parked: Sequence[tuple[str, str, bytes, Parked]],
        page: int = 1000,
    ) -> None:
        """A restore's (`store/backup.py`): `queued` (story, position, record) into the
        outbox in their order, `parked` (story, position, record, why) into the dead
        letters with their stories held; `page` commands a transaction (the services
        are stopped: no reader sees a part)."""
        keys = self.state(name)
        commands: list[tuple[EncodableT, ...]] = []
        for story, position, record in queued:
            commands.append(
                ("XADD", keys.outbox, "*", "story", story, "position", position, "record", record)
            )
        for story, position, record, why in parked:
            fields = ("story", story, "position", position, "record", record)
            commands.append(("XADD", keys.dlq, "*", *fields, "parked", _encode(why)))
            commands.append(("SADD", keys.parked, story))
        for i in range(0, len(commands), page):
            await sent_whole(self.client, commands[i : i + page])

    async def stats(self, name: str) -> dict[str, str]:
        raw = cast(dict[bytes, bytes], await self.client.hgetall(self.state(name).stats))
        return {as_text(k): as_text(v) for k, v in raw.items()}
