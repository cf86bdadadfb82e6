"""A projector on a cluster at newsroom rates: waiting for its partitions' rings
(`runtime/wakes.py`) against polling them as it did before, same run, alternated.

The log on a local cluster (3 masters, a replica each, `appendfsync always`, 8
partitions). The projector runs in a process of its own (`create_app`, its runner and
the collector's tuning, as `dateline projector` runs them), with its waiters, or with
none (`Runner.wakes` None: a read of every partition, then pauses of 1 ms doubling to
25, until one finds work). This process appends one update a call at a fixed rate over
200 stories, and hears each commit's ring on the partitions' sharded channels (a thread
a node, the time its loop reads it): "to the ring" is from the append's send to the
ring of a commit at or past its position. Idle, the projector's CPU a second with
nothing appended.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

import redis

from bench.harness import Report, Row, cpu_seconds
from bench.readside import _update
from dateline.cli.common import run_on_uvloop
from dateline.domain.positions import stream_id
from dateline.projector.app import create_app
from dateline.runtime.heap import tune_collector
from dateline.store.cluster import LocalCluster
from dateline.store.config import Settings
from dateline.store.log import Log

STORIES = 200
RATES = (100, 300)
MODES = ("rings", "polls")
IDLE_S = 10.0
"""How long an idle projector is watched, quick or not. Its CPU is counted in the kernel's
ticks (10 ms): a projector waiting for rings spends about 0.5% of a core, one tick in 2 s,
and a quick run's 2 s read 0.0% once (a CI rehearsal, 2026-12-06)."""


def _project(url: str, prefix: str, rings: bool, logs: Path) -> None:
    """In the child: a projector of the log under `prefix` until it is terminated; what
    it logs goes to `logs`."""
    with logs.open("ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)

    async def main() -> None:
        app = await create_app(Settings(None, Path("."), prefix, 8), url, consumer="bench")
        if not rings:
            app.runner.wakes = None
        tune_collector()  # as `dateline projector` runs
        await app.run(asyncio.Event())

    run_on_uvloop(main())


def _listen(url: str, channels: list[str], heard: list[tuple[float, int, tuple[int, int]]],
            stop: threading.Event) -> None:  # fmt: skip
    """In a thread: each ring of `channels` on the node at `url`, as (time, partition, id)."""
    client = redis.Redis.from_url(url)
    bell = client.pubsub()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    for channel in channels:
        bell.ssubscribe(channel)
    try:
        while not stop.is_set():
            message = bell.get_sharded_message(timeout=0.1)
            if message and message["type"] == "smessage":
                at = time.perf_counter()
                position = message["data"].decode().split(" ", 1)[0]
                partition, entry = position.split(":", 1)
                heard.append((at, int(partition), stream_id(entry)))
    finally:
        bell.close()
        client.close()


@dataclass
class _Round:
    cpu_us: float
    """The projector's CPU an update, us."""
    p50: float
    p99: float
    seen: int
    sent: int


class _Cluster:
    def __init__(self, cluster: LocalCluster, logs: Path) -> None:
        self.cluster, self.logs = cluster, logs
        self.spawn = multiprocessing.get_context("spawn")

    async def _projector(self, rings: bool) -> tuple[Log, BaseProcess]:
        log = await Log.connect(self.cluster.url, prefix=f"r{uuid.uuid4().hex[:8]}", partitions=8)
        child = self.spawn.Process(
            target=_project, args=(self.cluster.url, log.keys.prefix, rings, self.logs)
        )
        child.start()
        await asyncio.sleep(4)  # imports, leases, groups, waiters
        return log, child

    async def idle(self, rings: bool, seconds: float) -> float:
        """The projector's CPU a second, in % of a core, with nothing appended."""
        log, child = await self._projector(rings)
        try:
            assert child.pid is not None
            before = cpu_seconds([child.pid])
            await asyncio.sleep(seconds)
            return (cpu_seconds([child.pid]) - before) / seconds * 100
        finally:
            child.terminate()
            child.join()
            await log.close()

    async def steady(self, rings: bool, rate: int, seconds: float) -> _Round:
        log, child = await self._projector(rings)
        heard: list[tuple[float, int, tuple[int, int]]] = []
        stop = threading.Event()
        listeners = [
            threading.Thread(target=_listen, args=(url, channels, heard, stop))
            for url, channels in self._channels(log).items()
        ]
        for listener in listeners:
            listener.start()
        try:
            assert child.pid is not None
            n = int(rate * seconds)
            sent: list[tuple[float, int, tuple[int, int]]] = []
            before, start = cpu_seconds([child.pid]), time.perf_counter()
            for i in range(n):
                if (ahead := start + i / rate - time.perf_counter()) > 0:
                    await asyncio.sleep(ahead)
                at = time.perf_counter()
                [result] = await log.append([_update(i, STORIES, log.keys.prefix)])
                assert result.position is not None, result
                partition, entry = result.position.split(":", 1)
                sent.append((at, int(partition), stream_id(entry)))
            await asyncio.sleep(1)
            used = cpu_seconds([child.pid]) - before
        finally:
            stop.set()
            for listener in listeners:
                listener.join()
            child.terminate()
            child.join()
            await log.close()
        waits = _waits(sent, heard)
        return _Round(used / n * 1e6, _pct(waits, 0.5), _pct(waits, 0.99), len(waits), n)

    def _channels(self, log: Log) -> dict[str, list[str]]:
        """Each partition's ring channel, by the URL of the node that serves its slot."""
        client = redis.cluster.RedisCluster.from_url(self.cluster.url)
        try:
            found: dict[str, list[str]] = {}
            for p in range(log.keys.partitions):
                channel = log.keys.changes(p)
                node = client.get_node_from_key(channel)  # type: ignore[no-untyped-call]
                found.setdefault(f"redis://{node.host}:{node.port}", []).append(channel)
            return found
        finally:
            client.close()


def _waits(
    sent: list[tuple[float, int, tuple[int, int]]], heard: list[tuple[float, int, tuple[int, int]]]
) -> list[float]:
    """For each append, ms to the first ring of its partition at or past its entry."""
    by_partition: dict[int, list[tuple[float, tuple[int, int]]]] = {}
    for at, partition, entry in sorted(heard):
        by_partition.setdefault(partition, []).append((at, entry))
    waits = []
    for at, partition, entry in sent:
        rang = next((t for t, e in by_partition.get(partition, []) if e >= entry and t >= at), None)
        if rang is not None:
            waits.append((rang - at) * 1000)
    return sorted(waits)


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def run(report: Report, *, quick: bool = False) -> None:
    seconds, rounds = (2.0, 1) if quick else (6.0, 2)
    print(f"rings: a projector on a local cluster, {RATES} updates/s, {rounds} rounds a mode")
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(Path(tmp) / "c", 3, 1, "always") as c:
        cluster = _Cluster(c, Path(tmp) / "projector.log")
        idle: dict[str, list[float]] = {m: [] for m in MODES}
        steady: dict[tuple[int, str], list[_Round]] = {}
        for r in range(rounds):
            order = MODES if r % 2 == 0 else MODES[::-1]
            for mode in order:
                idle[mode].append(await cluster.idle(mode == "rings", IDLE_S))
            for rate in RATES:
                for mode in order:
                    got = await cluster.steady(mode == "rings", rate, seconds)
                    steady.setdefault((rate, mode), []).append(got)
    _rows(report, idle, steady)


def _rows(
    report: Report, idle: dict[str, list[float]], steady: dict[tuple[int, str], list[_Round]]
) -> None:
    rings, polls = statistics.median(idle["rings"]), statistics.median(idle["polls"])
    report.add(
        Row(
            "rings",
            "idle projector on a cluster: CPU, waiting for rings",
            rings,
            "% of a core",
            "polling, as before",
            rings / polls,
            f"polling {polls:.1f}%; medians of {len(idle['rings'])}",
        )
    )
    for rate in RATES:
        ring, poll = steady[(rate, "rings")], steady[(rate, "polls")]
        cpu = statistics.median(x.cpu_us for x in ring)
        base = statistics.median(x.cpu_us for x in poll)
        by_round = ", ".join(
            f"{a.cpu_us:.0f}/{b.cpu_us:.0f}" for a, b in zip(ring, poll, strict=True)
        )
        report.add(
            Row(
                "rings",
                f"projector on a cluster, {rate} updates/s: CPU an update, waiting for rings",
                cpu,
                "us",
                "polling, as before",
                cpu / base,
                f"polling {base:.0f} us; rounds (rings/polling): {by_round}",
            )
        )
        p50 = statistics.median(x.p50 for x in ring)
        base50 = statistics.median(x.p50 for x in poll)
        report.add(
            Row(
                "rings",
                f"projector on a cluster, {rate} updates/s: append to its commit's ring, p50",
                p50,
                "ms",
                "polling, as before",
                p50 / base50,
                "p99 by round (rings/polling): "
                + ", ".join(f"{a.p99:.1f}/{b.p99:.1f}" for a, b in zip(ring, poll, strict=True))
                + f"; rings heard for {sum(x.seen for x in ring)} of {sum(x.sent for x in ring)}",
            )
        )
