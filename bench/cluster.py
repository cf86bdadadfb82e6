"""The log on a 3-master cluster (a replica each) against one server, same run
(issue 16): appends a second, and CPU an update of the client and of the servers.

On these 2 cores six servers and the client share two cores, so a cluster is not
expected to be faster here (docs/scaling.md says what to expect on real hardware);
what this measures is what the split by partition costs the client, and what the
servers spend an update, so that the two can be told apart.
"""

from __future__ import annotations

import gzip
import itertools
import secrets
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import redis
import redis.asyncio as aioredis

from bench.harness import Report, Row, cpu_seconds
from bench.log_append import realistic_updates
from bench.projection import newsroom_updates
from dateline.projector.app import create_app as projector_app
from dateline.projector.handler import ProjectorHandler as Handler
from dateline.projector.replay import rebuild_all
from dateline.store import backup, migrate
from dateline.store.cluster import LocalCluster
from dateline.store.config import Settings
from dateline.store.connection import open_client
from dateline.store.embedded import EmbeddedRedis
from dateline.store.layout import DELIVER_GROUP, Keys
from dateline.store.log import CLUSTER_PARTITIONS, Log
from dateline.store.seal import seal_log, sealing_key
from dateline.store.subscriptions import Subscriptions

BATCH = 1000


async def _measure(
    url: str,
    pids: list[int],
    payloads: list[bytes],
    runs: int,
    min_replicas: int = 0,
    partitions: int = 8,
    batch: int = BATCH,
) -> tuple[float, float, float]:
    """Median (updates/s, client CPU us an update, servers' CPU us an update) of `runs`
    fresh logs, each filled batch after batch."""
    n = len(payloads)
    batches = [payloads[i : i + batch] for i in range(0, n, batch)]
    rounds = []
    for _ in range(runs):
        log = await Log.connect(
            url,
            prefix=f"b{uuid.uuid4().hex[:8]}",
            partitions=partitions,
            min_replicas=min_replicas,
        )
        try:
            servers, client = cpu_seconds(pids), time.process_time()
            start = time.perf_counter()
            async for results in log.append_stream(batches):
                assert results[-1].status == "appended", results[-1]
            took = time.perf_counter() - start
            rounds.append(
                (
                    n / took,
                    (time.process_time() - client) / n * 1e6,
                    (cpu_seconds(pids) - servers) / n * 1e6,
                )
            )
        finally:
            await log.close()
    rounds.sort()
    return rounds[len(rounds) // 2]


def _bus_messages(nodes: list[str]) -> int:
    """Pub/sub messages the cluster's nodes have sent each other over the bus so far,
    plain and sharded (CLUSTER INFO)."""
    sent = 0
    for url in nodes:
        client = redis.Redis.from_url(url)
        try:
            info = client.cluster("INFO")
        finally:
            client.close()
        sent += int(info.get("cluster_stats_messages_publish_sent", 0))
        sent += int(info.get("cluster_stats_messages_publishshard_sent", 0))
    return sent


async def _projected(
    url: str,
    pids: list[int],
    payloads: list[bytes],
    runs: int,
    *,
    nodes: list[str] | None = None,
    plain_bell: bool = False,
    views_url: str | None = None,
) -> tuple[float, float, float, float]:
    """Median (updates/s, projector CPU us an update, servers' CPU us an update, bus
    pub/sub messages a commit) of `runs` projectors (one process: this one's runner and
    handler, as `dateline projector` runs them) catching up a log of `payloads` appended
    before they start. `nodes`: a cluster's, whose bus is counted. `plain_bell`: commits
    ring with a plain PUBLISH, as before the sharded doorbell (the baseline). `views_url`:
    the read models in that store of their own (its process among `pids`)."""
    n = len(payloads)
    rounds = []
    for _ in range(runs):
        prefix = f"p{uuid.uuid4().hex[:8]}"
        log = await Log.connect(url, prefix=prefix, partitions=8)
        async for _ in log.append_stream([payloads[i : i + BATCH] for i in range(0, n, BATCH)]):
            pass
        cfg = Settings(None, Path("."), prefix, 8, views_url=views_url)
        app = await projector_app(cfg, url, consumer="bench")
        commits = _Counted(app.handler)
        if plain_bell:
            plain = ("PUBLISH", app.handler.models.changes)

            def bell(_: int, plain: tuple[str, str] = plain) -> tuple[str, str]:
                return plain

            app.handler.bell = bell  # type: ignore[method-assign,assignment]
        try:
            bus = _bus_messages(nodes or [])
            servers, client = cpu_seconds(pids), time.process_time()
            start = time.perf_counter()
            done = quiet = 0
            while quiet < 2:
                step = await app.runner.step()
                done += step
                quiet = quiet + 1 if step == 0 else 0
            took = time.perf_counter() - start
            assert done == n, (done, n)
            rounds.append(
                (
                    n / took,
                    (time.process_time() - client) / n * 1e6,
                    (cpu_seconds(pids) - servers) / n * 1e6,
                    (_bus_messages(nodes or []) - bus) / max(1, commits.count),
                )
            )
        finally:
            await app.runner.release_all()
            await app.client.aclose()
            if app.views is not None:
                await app.views.aclose()
            await log.close()
    rounds.sort()
    return rounds[len(rounds) // 2]


class _Counted:
    """Counts the handler's commit script calls (a partition's commit, on a cluster)."""

    def __init__(self, handler: Handler) -> None:
        self.count = 0
        call = handler._call

        async def counted(keys: list[str], args: list[str | bytes | float]) -> object:
            self.count += 1
            return await call(keys, args)

        handler._call = counted  # type: ignore[method-assign]


async def _migrated(source_url: str, target_url: str, payloads: list[bytes]) -> float:
    """Updates/s of `dateline migrate`'s copy and check (`store/migrate.py`): a log of
    `payloads` on one server with 8 partitions, moved to the cluster with 16."""
    source = await Log.connect(source_url, prefix=f"m{uuid.uuid4().hex[:8]}", partitions=8)
    target = await open_client(target_url)
    try:
        async for _ in source.append_stream(
            [payloads[i : i + BATCH] for i in range(0, len(payloads), BATCH)]
        ):
            pass
        to = Keys(source.keys.prefix, 16, slotted=True)  # as `dateline migrate` makes it
        start = time.perf_counter()
        await migrate.freeze(source.redis, source.keys, "is being moved (bench)", "bench")
        checks = await migrate.copy_log(source.redis, source.sealing, target, to)
        wrong = await migrate.check(target, to, checks)
        took = time.perf_counter() - start
        assert wrong == [], wrong
        return len(payloads) / took
    finally:
        await source.close()
        await target.aclose()


async def _backed_up(
    url: str, payloads: list[bytes], tmp: Path, rounds: int
) -> tuple[float, float, float, float]:
    """Updates/s of `dateline backup`'s writing (gzipped) and `dateline restore`'s check
    of the file, writing and check of the restored log: `payloads` on one server with 8
    partitions, restored under another prefix on the same server. Then a restore with a
    seal key both ways (`_sealed_restore`), `rounds` each, alternated: their medians."""
    log = await Log.connect(url, prefix=f"b{uuid.uuid4().hex[:8]}", partitions=8)
    try:
        async for _ in log.append_stream(
            [payloads[i : i + BATCH] for i in range(0, len(payloads), BATCH)]
        ):
            pass
        path = tmp / "backup.ndjson.gz"
        start = time.perf_counter()
        with gzip.open(path, "wb") as out:
            await backup.write(log.redis, log.sealing, out, source="bench", key=b"k" * 32)
        written = time.perf_counter() - start
        to = Keys(f"r{uuid.uuid4().hex[:8]}", 8)
        start = time.perf_counter()
        checked = backup.verify(path, b"k" * 32)
        await Log(log.redis, to).check_partitions()
        done = await backup.restore(path, checked, log.redis, to)
        wrong = await migrate.check(log.redis, to, done.checks)
        restored = time.perf_counter() - start
        assert wrong == [], wrong
        key = await sealing_key(log.redis, secrets.token_bytes(32))
        assert key is not None, "the bench's server has functions"
        ways: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(rounds):
            for one_pass in (True, False):
                took = await _sealed_restore(log.redis, path, key, one_pass=one_pass)
                ways[one_pass].append(len(payloads) / took)
        one, two = (sorted(ways[w])[len(ways[w]) // 2] for w in (True, False))
        return len(payloads) / written, len(payloads) / restored, one, two
    finally:
        await log.close()


async def _restored_to_cluster(url: str, path: Path) -> float:
    """Updates/s of `dateline restore`'s check of the file, writing and check of the
    restored log on the cluster, with a new cluster log's partitions (`_backed_up`'s
    file, of a log on one server with 8)."""
    target = await open_client(url)
    try:
        to = Keys(f"r{uuid.uuid4().hex[:8]}", CLUSTER_PARTITIONS, slotted=True)
        start = time.perf_counter()
        checked = backup.verify(path, b"k" * 32)
        await Log(target, to).check_partitions()
        done = await backup.restore(path, checked, target, to)
        wrong = await migrate.check(target, to, done.checks)
        took = time.perf_counter() - start
        assert wrong == [], wrong
        return checked.end.updates / took
    finally:
        await target.aclose()


async def _rebuilds(one_url: str, cluster_url: str, runs: int, n: int) -> tuple[float, float]:
    """Updates/s of a one-process rebuild (`rebuild_all`, as `dateline replay` runs
    below its workers' threshold) of `n` newsroom updates over `n / 100` stories, on one
    server (8 partitions) and on the cluster (16): the medians of `runs` each,
    alternated."""
    updates = newsroom_updates(n, max(1, n // 100))
    logs = [
        await Log.connect(url, prefix=f"q{uuid.uuid4().hex[:8]}", partitions=count)
        for url, count in ((one_url, 8), (cluster_url, 16))
    ]
    rates: list[list[float]] = [[], []]
    try:
        for log in logs:
            async for _ in log.append_stream(
                [updates[i : i + BATCH] for i in range(0, len(updates), BATCH)]
            ):
                pass
        for _ in range(runs):
            for log, got in zip(logs, rates, strict=True):
                start = time.perf_counter()
                done = await rebuild_all(log, log.keys)
                got.append(done.updates / (time.perf_counter() - start))
    finally:
        for log in logs:
            await log.close()
    one, spread = (sorted(r)[len(r) // 2] for r in rates)
    return one, spread


async def _sealed_restore(
    client: aioredis.Redis, path: Path, key: bytes, *, one_pass: bool
) -> float:
    """Seconds of `dateline restore` with a seal key, as it runs now (`one_pass`: the
    lists written sealed, checked so, the partitions marked) or as it ran before stop 83
    (written plain, checked, then `seal_log` reading each list record back to seal it).
    Its keys deleted after, outside the time."""
    to = Keys(f"s{uuid.uuid4().hex[:8]}", 8)
    start = time.perf_counter()
    checked = backup.verify(path, b"k" * 32)
    await Log(client, to).check_partitions()
    with_key = key if one_pass else None
    done = await backup.restore(path, checked, client, to, seal_key=with_key)
    wrong = await migrate.check(client, to, done.checks, seal_key=with_key)
    sealed = await seal_log(client, to, key, listed=one_pass)
    took = time.perf_counter() - start
    assert wrong == [], wrong
    assert sealed.mismatched == [], sealed.mismatched
    async for found in client.scan_iter(match=f"{to.prefix}:*", count=1000):
        await client.unlink(found)
    return took


async def _owing(url: str, payloads: list[bytes], case: str) -> Log:
    """`payloads` in a log of their own, fanned out (a delivery group), with two
    subscriptions added before them unless `case` is "none", their marks at its end if
    it is "fanned"."""
    log = await Log.connect(url, prefix=f"o{uuid.uuid4().hex[:8]}", partitions=8)
    registry = Subscriptions(log.redis, log.keys)
    names = [] if case == "none" else ["cms", "alerts"]
    for name in names:
        await registry.add(f"https://{name}.example.org/hooks", name=name)
    async for _ in log.append_stream(
        [payloads[i : i + BATCH] for i in range(0, len(payloads), BATCH)]
    ):
        pass
    for p in range(log.keys.partitions):
        await log.redis.xgroup_create(log.keys.log(p), DELIVER_GROUP, id="0")
        if case == "fanned":
            newest = await log.redis.xrevrange(log.keys.log(p), count=1)
            last = cast(list[tuple[bytes, object]], newest)[0][0]
            for name in names:
                await log.redis.hset(registry.state(name).marks, str(p), last)
    return log


async def _owed(url: str, payloads: list[bytes], tmp: Path, rounds: int) -> dict[str, float]:
    """Updates/s of a backup and of a restore, by "<case> <step>": a log whose two
    subscriptions are owed every update (`owed`: added before it, nothing fanned out, so
    each update is a position in two `delivery` lines, put back in two outboxes), one
    whose two are fanned out and acknowledged to its end (`fanned`: what a backup meets
    on most nights), and the same log with none (`none`); medians of `rounds`,
    alternated."""
    logs = {case: await _owing(url, payloads, case) for case in ("none", "owed", "fanned")}
    try:
        took: dict[str, list[float]] = {}
        for _ in range(rounds):
            for case, log in logs.items():
                path = tmp / f"owed-{case}.ndjson.gz"
                start = time.perf_counter()
                with gzip.open(path, "wb") as out:
                    done = await backup.write(log.redis, log.sealing, out, source="b", key=None)
                took.setdefault(f"{case} backup", []).append(time.perf_counter() - start)
                assert done.unsent == (2 * len(payloads) if case == "owed" else 0), done.unsent
                to = Keys(f"r{uuid.uuid4().hex[:8]}", 8)
                start = time.perf_counter()
                restored = await backup.restore(path, backup.verify(path, None), log.redis, to)
                took.setdefault(f"{case} restore", []).append(time.perf_counter() - start)
                assert restored.queued == done.unsent
                async for found in log.redis.scan_iter(match=f"{to.prefix}:*", count=1000):
                    await log.redis.unlink(found)
        return {k: len(payloads) / sorted(t)[len(t) // 2] for k, t in took.items()}
    finally:
        for log in logs.values():
            async for found in log.redis.scan_iter(match=f"{log.keys.prefix}:*", count=1000):
                await log.redis.unlink(found)
            await log.close()


async def run(report: Report, *, quick: bool = False) -> None:
    n = 5_000 if quick else 50_000
    runs = 1 if quick else 3
    payloads = realistic_updates(n)
    print(f"cluster: {n:,} updates, batches of {BATCH}, fsync everysec, one server first")
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedRedis(Path(tmp) / "one", fsync="everysec") as one,
        EmbeddedRedis(Path(tmp) / "views", fsync="everysec") as views,
        LocalCluster(Path(tmp) / "cluster", 3, 1, "everysec", "bench") as cluster,
    ):
        single = await _measure(one.url, [one.pid], payloads, runs)
        pids = [node.pid for node in cluster.nodes]
        spread = await _measure(cluster.url, pids, payloads, runs)
        waited = await _measure(cluster.url, pids, payloads, runs, min_replicas=1)
        small = payloads[: len(payloads) // 5]
        spread_100 = await _measure(cluster.url, pids, small, runs, batch=100)
        waited_100 = await _measure(cluster.url, pids, small, runs, min_replicas=1, batch=100)
        wide = await _measure(cluster.url, pids, payloads, runs, partitions=CLUSTER_PARTITIONS)
        moved = await _migrated(one.url, cluster.url, payloads)
        backed, restored, one_pass, two_pass = await _backed_up(one.url, payloads, Path(tmp), runs)
        restored_spread = await _restored_to_cluster(cluster.url, Path(tmp) / "backup.ndjson.gz")
        owed = await _owed(one.url, payloads, Path(tmp), runs)
        rebuilt = await _rebuilds(one.url, cluster.url, runs, 20_000 if quick else 200_000)
        projected = await _projected(one.url, [one.pid], payloads, runs)
        urls = [node.url for node in cluster.nodes]
        projected_spread = await _projected(cluster.url, pids, payloads, runs, nodes=urls)
        projected_plain = await _projected(
            cluster.url, pids, payloads, runs, nodes=urls, plain_bell=True
        )
        projected_apart = await _projected(
            cluster.url, [*pids, views.pid], payloads, runs, views_url=views.url
        )
    _rows(report.add, single, spread, waited)
    report.add(
        Row(
            "cluster",
            f"3 masters + 3 replicas, {CLUSTER_PARTITIONS} partitions (a new cluster log's)",
            wide[0],
            "updates/s",
            "3 masters + 3 replicas, Log.append_stream",
            wide[0] / spread[0],
            "16 partitions a master: a batch of 1,000 is 48 calls, not 8",
        )
    )
    report.add(
        Row(
            "cluster",
            "3 masters + 3 replicas, batches of 100, waiting for 1 replica",
            waited_100[0],
            "updates/s",
            "the same, no wait",
            waited_100[0] / spread_100[0],
            f"{spread_100[0]:,.0f}/s without the wait; 8 partitions, so a batch is 8 calls "
            "of about 12 updates, each with its WAIT",
        )
    )
    _projection_rows(report.add, projected, projected_spread)
    _apart_rows(report.add, projected_spread, projected_apart)
    _doorbell_rows(report.add, projected_spread, projected_plain)
    report.add(
        Row(
            "cluster",
            "dateline migrate: one server (8 partitions) to the cluster (16), copy + check",
            moved,
            "updates/s",
            "one server, Log.append_stream",
            moved / single[0],
            "freeze, merge by stream id, positions mapped, each story's count and digest",
        )
    )
    report.add(
        Row(
            "cluster",
            "dateline backup: one server (8 partitions) to a gzipped file, signed",
            backed,
            "updates/s",
            "one server, Log.append_stream",
            backed / single[0],
            "each partition up to its cut, merged by stream id; settings and inboxes",
        )
    )
    report.add(
        Row(
            "cluster",
            "dateline restore: the file checked, written to one server (8), checked there",
            restored,
            "updates/s",
            "one server, Log.append_stream",
            restored / single[0],
            "digest and signature, then the records' pages, each story's count and digest",
        )
    )
    said = {
        "owed": "two subscriptions owed every update",
        "fanned": "two subscriptions fanned out and acknowledged to the end",
    }
    for case, step in itertools.product(said, ("backup", "restore")):
        report.add(
            Row(
                "cluster",
                f"dateline {step}: {said[case]}",
                owed[f"{case} {step}"],
                "updates/s",
                f"the same {step}, no subscription",
                owed[f"{case} {step}"] / owed[f"none {step}"],
                f"one server (8 partitions), medians of {runs}, alternated"
                + ("; each update a position in two delivery lines" if case == "owed" else ""),
            )
        )
    report.add(
        Row(
            "cluster",
            f"dateline restore: the same file to the cluster ({CLUSTER_PARTITIONS} partitions)",
            restored_spread,
            "updates/s",
            "3 masters + 3 replicas, Log.append_stream",
            restored_spread / spread[0],
            "a transaction a partition, side by side, on its slot's node (stop 83)",
        )
    )
    report.add(
        Row(
            "cluster",
            "rebuild in one process on the cluster (16 partitions), newsroom mix",
            rebuilt[1],
            "updates/s",
            "the same on one server (8 partitions)",
            rebuilt[1] / rebuilt[0],
            f"rebuild_all, medians of {runs} each, alternated; histories read and read "
            "models written a slot's part a transaction, on its node (stop 83)",
        )
    )
    report.add(
        Row(
            "cluster",
            "dateline restore with a seal key: the lists written sealed, checked, marked",
            one_pass,
            "updates/s",
            "restore, then seal_log over it (before stop 83)",
            one_pass / two_pass,
            f"medians of {runs} rounds each, alternated; the two passes {two_pass:,.0f}/s",
        )
    )


def _doorbell_rows(
    add: Callable[[Row], Awaitable[None] | Row],
    sharded: tuple[float, float, float, float],
    plain: tuple[float, float, float, float],
) -> None:
    base = "cluster bus pub/sub messages a commit, plain PUBLISH doorbell"
    add(Row("cluster", base, plain[3], "messages", note="to every other node: 5 of 6"))
    add(
        Row(
            "cluster",
            "cluster bus pub/sub messages a commit, sharded doorbell",
            sharded[3],
            "messages",
            base,
            sharded[3] / plain[3],
            "SPUBLISH on the partition's channel: to its shard's replica only",
        )
    )
    add(
        Row(
            "cluster",
            "CPU an update, all servers while projecting, sharded doorbell",
            sharded[2],
            "us",
            "the same, plain PUBLISH doorbell",
            sharded[2] / plain[2],
            f"{plain[2]:.1f} us with plain PUBLISH; the same run",
        )
    )


def _apart_rows(
    add: Callable[[Row], Awaitable[None] | Row],
    spread: tuple[float, float, float, float],
    apart: tuple[float, float, float, float],
) -> None:
    """The log on the cluster, its read models in a store of their own (one server)."""
    base = "projector catching up, 3 masters + 3 replicas"
    add(
        Row(
            "cluster",
            "projector catching up, the log on 3 masters, read models in a store apart",
            apart[0],
            "updates/s",
            base,
            apart[0] / spread[0],
            "one commit a cycle to the store, then a call a partition to the log that "
            "acknowledges and says how far it is settled (acked.lua), then the "
            "checkpoints to the store",
        )
    )
    for what, at in (("projector process", 1), ("all servers while projecting", 2)):
        add(
            Row(
                "cluster",
                f"CPU an update, {what}, read models in a store apart",
                apart[at],
                "us",
                f"CPU an update, {what}, 3 masters",
                apart[at] / spread[at],
                "the store's server counted with the cluster's" if at == 2 else "",
            )
        )


def _projection_rows(
    add: Callable[[Row], Awaitable[None] | Row],
    single: tuple[float, float, float, float],
    spread: tuple[float, float, float, float],
) -> None:
    one = "projector catching up, one server"
    add(Row("cluster", one, single[0], "updates/s", note="one process, 8 partitions"))
    add(
        Row(
            "cluster",
            "projector catching up, 3 masters + 3 replicas",
            spread[0],
            "updates/s",
            one,
            spread[0] / single[0],
            "a commit a partition, side by side; reads a stream each",
        )
    )
    for name, (_, client, servers, _) in (("one server", single), ("3 masters", spread)):
        add(Row("cluster", f"CPU an update, projector process, {name}", client, "us"))
        add(Row("cluster", f"CPU an update, all servers while projecting, {name}", servers, "us"))


def _rows(
    add: Callable[[Row], Awaitable[None] | Row],
    single: tuple[float, float, float],
    spread: tuple[float, float, float],
    waited: tuple[float, float, float],
) -> None:
    one = "one server, Log.append_stream"
    add(Row("cluster", one, single[0], "updates/s", note="the baseline; no replica"))
    add(
        Row(
            "cluster",
            "3 masters + 3 replicas, Log.append_stream",
            spread[0],
            "updates/s",
            one,
            spread[0] / single[0],
            "a batch split by partition, the parts side by side; 8 partitions on slot tags "
            "fall 3/2/3",
        )
    )
    add(
        Row(
            "cluster",
            "3 masters + 3 replicas, waiting for 1 replica",
            waited[0],
            "updates/s",
            "the same, no wait",
            waited[0] / spread[0],
        )
    )
    for name, (_, client, servers) in (("one server", single), ("3 masters", spread)):
        add(Row("cluster", f"CPU an update, client process, {name}", client, "us"))
        add(Row("cluster", f"CPU an update, all servers, {name}", servers, "us"))
