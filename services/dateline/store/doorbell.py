"""The doorbell: rung by the projector at each commit, heard by every reader that waits.

The channel is a doorbell, not a feed: readers re-read the checkpoints when it rings
(and every `poll_s` without it), so a missed message delays a push but loses nothing.

On a cluster each partition's commits ring its own sharded channel (`Keys.changes`), in
its stream's slot: a plain PUBLISH is sent over the cluster bus to every node, a
sharded one only to the nodes of its shard. The doorbell listens to every partition's
channel on the node that serves it, and to the plain channel for what is rare and for
all (a version switched, a reader revoked).
"""

from __future__ import annotations

import asyncio
import functools
import math
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.cluster import ClusterPubSub, RedisCluster

from dateline.store.connection import UNREACHABLE, is_cluster
from dateline.store.layout import Keys, changes_channel
from dateline.store.pages import split

log = structlog.get_logger("dateline.doorbell")
SWITCH = b"switch"
"""What `dateline replay` publishes when it switches the active version."""
READERS = b"readers"
"""What `dateline readers revoke` publishes: grants a process keeps are to be checked anew."""


def bell(cluster: bool, keys: Keys, partition: int) -> tuple[str, str]:
    """How partition N rings: (`PUBLISH`, the one channel) on one server, (`SPUBLISH`,
    its sharded channel) on a cluster. Its commits and a story rebuilt in place alike."""
    if cluster:
        return ("SPUBLISH", keys.changes(partition))
    return ("PUBLISH", changes_channel(keys.prefix))


class _Moved(Exception):
    """A shard channel's slot moved (a resharding): subscribe again where it is now."""


LOST: tuple[type[Exception], ...] = (*UNREACHABLE, _Moved)
"""What ends a subscription: the doorbell makes it again, ringing on its timer meanwhile."""


class Doorbell:
    """Rings when the projector commits (pub/sub), and at least every `poll_s` without it.

    Take `current()` before reading, then `wait()` on it: a commit that lands between
    the read and the wait still wakes the reader.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        poll_s: float = 1.0,
        shards: Sequence[str] = (),
        pace_s: float = 0.0,
        partition_of: Callable[[str], int] | None = None,
    ) -> None:
        """`shards`: on a cluster, every partition's sharded channel (`Keys.changes`).
        `pace_s`: the least time between two rings (`ring`). `partition_of`: a story's
        partition, for the bells of single stories (`current_story`); without it they
        ring as the doorbell does."""
        self.client, self.channel, self.poll_s = client, changes_channel(prefix), poll_s
        self.shards = list(shards)
        self.pace_s = pace_s
        self.partition_of = partition_of
        self._event = asyncio.Event()
        self._stories: weakref.WeakValueDictionary[str, asyncio.Event] = (
            weakref.WeakValueDictionary()
        )
        """The bell of each story a stream waits on now (`current_story`)."""
        self._named: set[str] = set()
        self._partitions: set[int] = set()
        self._all = False
        """What the messages since the last ring moved (`_note`): these stories, every
        story of these partitions, or, unknown, all."""
        self._all_at = -math.inf
        """When every story's bell last rang: they all ring at least every `poll_s`, as
        the doorbell does, whatever the messages named."""
        self._rung = -math.inf
        self._due: asyncio.TimerHandle | None = None
        self.switched = False
        self.listeners: list[Callable[[bytes | None, bool], None]] = []
        """Told each message (bytes, True), the subscription made (None, True) and lost
        (None, False): what a listener keeps is good only while it hears them all."""
        self.pages: Callable[[bytes], None] | None = None
        """Given the page a message carries (`store/pages.py`), before its listeners
        hear the message, which they hear without it."""
        self.rung: list[Callable[[], None]] = []
        """Called after each ring: what was kept until the bell it rang is let go."""
        self.sweeps = 0
        """How many rings have woken every waiter (`ring_all`, and the timer's): one
        since a reader last read means it may have missed what the messages say."""

    @classmethod
    def of(
        cls, client: aioredis.Redis, keys: Keys, poll_s: float = 1.0, pace_s: float = 0.0
    ) -> Doorbell:
        """The doorbell of a log: on a cluster, of its partitions' sharded channels."""
        shards = [keys.changes(p) for p in range(keys.partitions)] if is_cluster(client) else []
        return cls(client, keys.prefix, poll_s, shards, pace_s, keys.partition)

    def current(self) -> asyncio.Event:
        return self._event

    def current_story(self, story: str) -> asyncio.Event:
        """`current`, for a stream of one story: it rings when a commit names the story,
        or names none of its partition, and whenever the timer rings, a version switches,
        a reader is revoked or the subscription is made anew. A story's stream woke for
        every story's commits: 20 streams of 20 stories, at 1,000 updates a second over
        200, cost the query process 4.4 times one stream's CPU an update."""
        if self.partition_of is None:
            return self._event
        bell = self._stories.get(story)
        if bell is None:
            bell = self._stories[story] = asyncio.Event()
        return bell

    def ring_all(self) -> None:
        """`ring`, and every story's bell with it."""
        self._all = True
        self.ring()

    def _note(self, message: bytes) -> None:
        """What a message moved, for the story bells the next ring rings."""
        head, colon, news = message.partition(b":")
        if not head.isdigit():  # a switch, a revocation: not of one partition
            self._all = True
            return
        _, *stories = news.split(b" ") if colon else [b""]
        if stories:
            self._named.update(s.decode() for s in stories)
        else:
            self._partitions.add(int(head))

    def ring(self) -> None:
        """Wake the waiters of `current`, and of the story bells the messages since the
        last ring moved: now, or if the last ring was less than `pace_s` ago, once that
        long has passed since it. A ring is never dropped, only gathered with those
        after it: at 1,000 commits a second one `/v1/live` stream woke (a read, a push) for
        each, and its process spent 0.39 to 0.41 ms of CPU an update; woken at most every
        2 ms, 0.33 to 0.39 (3 pairs alternated, `docs/read-side.md`). The
        listeners (`_tell`) still hear every message as it comes: what they keep must
        not outlive a commit."""
        if self._due is not None:
            return  # a ring is already set for the end of this pace
        loop = asyncio.get_running_loop()
        wait = self._rung + self.pace_s - loop.time()
        if wait > 0:
            self._due = loop.call_later(wait, self._ring_now)
        else:
            self._ring_now()

    def _ring_now(self) -> None:
        self._due = None
        self._rung = now = asyncio.get_running_loop().time()
        self._event.set()
        self._event = asyncio.Event()
        stories = self._stories
        if self._all or now - self._all_at >= self.poll_s:
            self._all_at = now
            self.sweeps += 1
            rung = list(stories)
        else:
            rung = [s for s in self._named if s in stories]
            if self._partitions and self.partition_of is not None:
                rung += [s for s in list(stories) if self.partition_of(s) in self._partitions]
        for story in rung:
            if (bell := stories.pop(story, None)) is not None:
                bell.set()
        self._named, self._partitions, self._all = set(), set(), False
        for hook in self.rung:
            hook()

    async def wait(self, bell: asyncio.Event, seconds: float) -> bool:
        """True if it rang within `seconds`.

        `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11 wait_for loses a
        cancellation that lands as the bell rings (python/cpython#86296), and a live
        stream whose client had gone carried on (see `store/connection.py`).
        """
        try:
            async with asyncio.timeout(seconds):
                await bell.wait()
        except TimeoutError:
            return False
        return True

    def _tell(self, message: bytes | None, *, live: bool) -> None:
        for listener in self.listeners:
            listener(message, live)

    async def run(self) -> None:
        """Listen until cancelled; reconnects after errors, ringing on a timer meanwhile."""
        while True:
            try:
                if isinstance(self.client, RedisCluster):
                    # A cluster client maps its slots at its first command: a PubSub of
                    # one that had sent none failed at once (KeyError of a slot), and the
                    # doorbell with it.
                    await self.client.initialize()
                if self.shards and isinstance(self.client, RedisCluster):
                    await self._hear_shards(self.client)
                elif isinstance(self.client, RedisCluster):
                    await self._hear_cluster(self.client)
                else:
                    await self._hear()
            except Exception as exc:
                self._tell(None, live=False)
                if isinstance(exc, LOST):
                    log.warning(
                        "doorbell lost its subscription; polling until it is back", error=str(exc)
                    )
                else:  # a fault of ours or of the client: said, and tried again, not fatal
                    log.error("doorbell failed; polling, and subscribing again", exc_info=exc)
                self.switched = True
                self.ring_all()
                await asyncio.sleep(self.poll_s)
            except BaseException:  # cancelled: no one hears for the listeners
                self._tell(None, live=False)
                raise

    async def _hear(self) -> None:
        """One connection of its own, subscribed, read as it comes; the timer rings
        beside it. Not redis-py's PubSub, whose every read makes a timer, goes through a
        retry wrapper and, in RESP3, a push handler: 4 messages every 4 ms cost a
        listener 82 to 106 us of CPU a message through it, 48 to 64 this way (RESP2,
        whose messages are plain arrays); at 1,000 updates/s the query service spent
        0.21 ms of CPU an update against 0.22 to 0.23."""
        pool = self.client.connection_pool
        connection = pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})
        ticking = asyncio.get_running_loop().create_task(self._tick())
        try:
            await connection.connect()  # type: ignore[no-untyped-call]  # unannotated
            await connection.send_command("SUBSCRIBE", self.channel)
            while True:
                # math.inf: blocks until a message; the timer rings meanwhile.
                kind, _, data = await connection.read_response(timeout=math.inf)
                if kind == b"subscribe":
                    self._tell(None, live=True)  # heard from here on, not before
                    self._all = True
                elif kind == b"message":
                    self._heard(data)
                self.ring()
        finally:
            ticking.cancel()
            await connection.disconnect()

    async def _hear_cluster(self, client: RedisCluster) -> None:
        """The plain channel alone, through a node of the cluster (redis-py's PubSub)."""
        pubsub: ClusterPubSub = client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            while True:
                msg = await pubsub.get_message(timeout=self.poll_s)
                if msg is not None and msg.get("type") == "subscribe":
                    self._tell(None, live=True)
                    self._all = True
                elif msg is not None:
                    self._heard(msg.get("data"))
                self.ring()
        finally:
            await pubsub.aclose()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            self.ring_all()

    def _heard(self, data: object) -> None:
        if data == SWITCH:
            self.switched = True
        if isinstance(data, bytes):
            data, page = split(data)
            if page is not None and self.pages is not None:
                self.pages(page)
            self._note(data)
        else:
            self._all = True
        self._tell(data if isinstance(data, bytes) else None, live=True)

    async def _hear_shards(self, client: RedisCluster) -> None:
        """The plain channel and every shard's, each node's connection read by a task of
        its own: redis-py reads the nodes one after another, each for up to its timeout."""
        pubsub: ClusterPubSub = client.pubsub()
        pumps: list[asyncio.Task[None]] = []
        heard: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()

        async def pump(get: Callable[[], Awaitable[dict[str, Any] | None]]) -> None:
            try:
                while True:
                    if (msg := await get()) is not None:  # None: its timeout, not a ring
                        heard.put_nowait(msg)
            except Exception as exc:  # for the loop below to raise
                heard.put_nowait(exc)

        try:
            await pubsub.subscribe(self.channel)
            await pubsub.ssubscribe(*self.shards)
            pumps.append(asyncio.create_task(pump(lambda: pubsub.get_message(timeout=self.poll_s))))
            for name in list(pubsub.node_pubsub_mapping):
                node = client.get_node(node_name=name)
                get = functools.partial(
                    pubsub.get_sharded_message, target_node=node, timeout=self.poll_s
                )
                pumps.append(asyncio.create_task(pump(get)))
            wanted, confirmed = 1 + len(self.shards), 0
            while True:
                try:
                    async with asyncio.timeout(self.poll_s):
                        msg = await heard.get()
                except TimeoutError:
                    msg = None
                if isinstance(msg, BaseException):
                    raise msg
                kind = msg and msg.get("type")
                if kind in ("subscribe", "ssubscribe"):
                    # Live once every channel is confirmed. One confirmed again (redis-py
                    # made a lost connection anew) was not heard meanwhile: what the
                    # listeners kept is dropped, as for every confirmation.
                    confirmed += 1
                    self._tell(None, live=confirmed >= wanted)
                    self._all = True
                elif kind == "sunsubscribe":  # its slot moved to another node
                    raise _Moved(f"{msg and msg.get('channel')!r} moved")
                elif msg is not None and confirmed >= wanted:
                    self._heard(msg.get("data"))
                elif msg is not None:  # rings, but promises no one it heard them all yet
                    self.switched = self.switched or msg.get("data") == SWITCH
                    self._tell(None, live=False)
                    self._all = True
                self.ring()
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await pubsub.aclose()
