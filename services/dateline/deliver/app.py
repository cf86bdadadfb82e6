"""The delivery service as a FastStream app: the kit's subscribers fan the log out to
the outboxes; one worker a subscription delivers each outbox.

One process delivers at a time (the kit's lease on group `deliver`); others wait as
standbys and take over within the lease's time to live when it dies. Workers start
only once the lease is held, so an outbox is only ever worked by one process.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog
from faststream import FastStream

from dateline.deliver.fanout import Fanout
from dateline.deliver.worker import RetryPolicy, Sender, Sending, Worker
from dateline.kit import DatelineLog
from dateline.store import migrate
from dateline.store.config import Settings
from dateline.store.connection import UNREACHABLE, cluster_client, connect, described, outage
from dateline.store.layout import DELIVER_GROUP, Keys, deliveries_held_key
from dateline.store.log import PARTITIONS, Log
from dateline.store.subscriptions import Subscriptions

log = structlog.get_logger("dateline.deliver")
FOLLOW_S = 1.0
"""How often the service looks for subscriptions added, removed or paused."""
HELD_FOR_S = 3 * FOLLOW_S
"""How long a word that every send is held lasts unless renewed (each `FOLLOW_S`)."""


@dataclass
class DeliveryService:
    kit: DatelineLog
    subscriptions: Subscriptions
    sender: Sender
    policy: RetryPolicy
    window: int = 256
    concurrency: int = 16
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    workers: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _follow: asyncio.Task[None] | None = None
    app: FastStream | None = None
    moving: str | None = None
    """Where the log is being moved, or has moved, as last read: the workers hold."""
    sending: Sending = field(default_factory=Sending)

    async def start(self) -> None:
        self._follow = asyncio.create_task(self._follow_subscriptions())

    async def stop(self) -> None:
        self.stop_event.set()
        if self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow
        ended = await asyncio.gather(*self.workers.values(), return_exceptions=True)
        for name, failed in zip(self.workers, ended, strict=True):
            if isinstance(failed, Exception):  # one the follower had not yet seen
                log.error("worker failed", subscription=name, error=described(failed))
        self.workers.clear()
        await self.sender.aclose()
        await self.subscriptions.client.aclose()

    async def _follow_subscriptions(self) -> None:
        while not self.stop_event.is_set():
            try:
                await self._follow_move()
                names = {s.name for s in await self.subscriptions.all()}
            except UNREACHABLE as exc:  # the workers say so too; look again in a while
                log.warning(f"{outage(exc)}; subscriptions unchanged", error=described(exc))
                names = set(self.workers)
            except Exception:
                log.exception("reading the subscriptions failed; trying again")
                names = set(self.workers)
            for name, task in list(self.workers.items()):
                if task.done():
                    del self.workers[name]
                    if not task.cancelled() and (failed := task.exception()) is not None:
                        log.error(
                            "worker failed; restarting it",
                            subscription=name,
                            error=described(failed),
                        )
            for name in sorted(names - set(self.workers)):
                worker = Worker(
                    self.subscriptions,
                    name,
                    self.sender,
                    self.policy,
                    window=self.window,
                    concurrency=self.concurrency,
                    moving=lambda: self.moving,
                    sending=self.sending,
                )
                self.workers[name] = asyncio.create_task(worker.run(self.stop_event))
            await asyncio.sleep(FOLLOW_S)

    async def _follow_move(self) -> None:
        """Hold every send while `dateline migrate` moves the log, and after: what is
        owed then, the move copies to the target's outboxes, so a send from here would
        reach the receiver twice. Read once a `FOLLOW_S`; once the sends under way have
        ended, say so (`deliveries_held_key`), and the move reads what is owed after."""
        moving = await migrate.frozen_to(self.subscriptions.client, self.kit.keys)
        if moving != self.moving and moving is not None:
            log.warning(
                f"the log is being moved to {moving}, or has moved there (`dateline "
                "migrate`): deliveries held; deliver runs there once the move is done",
                to=moving,
            )
        elif moving != self.moving:
            log.info("the log's move was called off (`dateline migrate --release`); delivering")
        self.moving = moving
        if moving is not None:
            await self._say_held(moving)

    async def _say_held(self, moving: str) -> None:
        """Once no send is under way (each ends within the retry policy's timeout), tell
        the move every send is held; renewed while it is, gone a few seconds after."""
        try:
            async with asyncio.timeout(self.policy.timeout_s + FOLLOW_S):
                await self.sending.idle.wait()
        except TimeoutError:
            return  # said at a later look, once they have ended
        key = deliveries_held_key(self.kit.keys.prefix)
        await self.subscriptions.client.set(key, moving, px=int(HELD_FOR_S * 1000))


@dataclass
class _Replicas:
    """DATELINE_MIN_REPLICAS for the outboxes, decided as the log decides it for appends
    (`Log.resolve_replicas`: `auto` is one where every master has a replica)."""

    kit: DatelineLog
    setting: int
    _log: Log | None = None

    async def wanted(self) -> int:
        if self._log is None or self._log.redis is not self.kit.client:
            self._log = Log(self.kit.client, self.kit.keys, min_replicas=self.setting)
        return await self._log.resolve_replicas()


def create_app(
    cfg: Settings,
    url: str,
    *,
    cluster: bool = False,
    policy: RetryPolicy | None = None,
    consumer: str | None = None,
    window: int = 256,
    concurrency: int = 16,
) -> DeliveryService:
    """The service, not yet started: `service.app` is the FastStream app to run.
    `cluster`: `url` is a node of a Redis Cluster (`store.connection.cluster_mode`)."""
    kit = DatelineLog(
        url,
        group=DELIVER_GROUP,
        consumer=consumer,
        prefix=cfg.prefix,
        partitions=cfg.partitions,
        lease_ttl_ms=cfg.lease_ttl_ms,
        seal_key=cfg.seal(),
        cluster=cluster,
    )
    # The fan-out writes through the kit's client (it runs only while the kit does);
    # the workers through the service's. Neither needs the partition count: the log's
    # config, which the kit reads, is the one that counts.
    client = cluster_client(url) if cluster else connect(url)
    subscriptions = Subscriptions(client, Keys(cfg.prefix, cfg.partitions or PARTITIONS))
    replicas = _Replicas(kit, cfg.min_replicas)
    fanout = Fanout(
        lambda: Subscriptions(kit.client, kit.keys), replicas.wanted, cfg.replica_timeout_ms
    )
    kit.batches(fanout, parking=fanout.parking)
    sender = Sender(limit=64)
    service = DeliveryService(
        kit, subscriptions, sender, policy or RetryPolicy(), window, concurrency
    )
    service.app = kit.app(after_startup=[service.start], on_shutdown=[service.stop])
    return service
