"""Deliveries a second to one local receiver: the delivery service against a raw loop.

The receiver is a process of its own (`tests/e2e/receiver.py`, answering 204). The
raw loop reads the same updates from the log and POSTs them with aiohttp, as many
in flight as the service's worker has, with nothing else: no outbox, no signature,
no retry state. A second loop does the same with httpcore's pool, the service's client
until 2026-12-04, for the record. The service starts with the same updates waiting in
the log and does all of it: fan-out through FastStream, outbox, signing, state per
delivery.
Both run in this process, alternating, in the same minutes.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpcore
import redis.asyncio as aioredis
from tests.e2e.processes import free_port
from tests.factories import encode, update

from bench.harness import Report, Row, log_records
from dateline.deliver.app import create_app
from dateline.deliver.fanout import Fanout, route
from dateline.deliver.worker import RetryPolicy
from dateline.kit import Batch, LogEntry
from dateline.runtime import groups
from dateline.runtime.logs import configure
from dateline.store.config import Settings
from dateline.store.connection import connect
from dateline.store.embedded import EmbeddedRedis
from dateline.store.layout import Keys
from dateline.store.log import Log
from dateline.store.subscriptions import Subscriptions

CONCURRENCY = 16
CPU: dict[str, list[float]] = {"raw": [], "httpcore": [], "service": []}
"""CPU seconds of this process per delivery: what each loop costs beside the receiver."""


def _updates(n: int, stories: int) -> list[bytes]:
    return [
        encode(
            update(
                "dateline.statement.made",
                subject=f"story-{i % stories:03d}",
                id=f"b{i}",
                data={"statement": f"s{i}", "speaker": "Kim Jong Un", "text": f"said {i}"},
            )
        )
        for i in range(n)
    ]


async def raw_loop(client: aioredis.Redis, keys: Keys, url: str) -> float:
    """POST every record of the log, CONCURRENCY at a time, as fast as it goes, with
    aiohttp, as the service sends them."""
    records = await log_records(client, keys.logs())
    queue = _queued(records)
    headers = {"content-type": "application/cloudevents+json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as http:

        async def post() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with http.post(url, data=body, headers=headers) as response:
                    assert response.status == 204
                    await response.read()

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(post() for _ in range(CONCURRENCY)))
        CPU["raw"].append((time.process_time() - cpu) / len(records))
        return len(records) / (time.perf_counter() - start)


async def httpcore_loop(client: aioredis.Redis, keys: Keys, url: str, *, most: int) -> float:
    """`raw_loop` with httpcore's pool, which the service used until 2026-12-04."""
    records = (await log_records(client, keys.logs()))[:most]
    queue = _queued(records)
    headers = [(b"content-type", b"application/cloudevents+json")]
    async with httpcore.AsyncConnectionPool(max_connections=CONCURRENCY) as pool:

        async def post() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                response = await pool.request("POST", url, headers=headers, content=body)
                assert response.status == 204

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(post() for _ in range(CONCURRENCY)))
        CPU["httpcore"].append((time.process_time() - cpu) / len(records))
        return len(records) / (time.perf_counter() - start)


def _queued(records: list[bytes]) -> asyncio.Queue[bytes]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for r in records:
        queue.put_nowait(r)
    return queue


async def service(server_url: str, prefix: str, receiver: str, n: int) -> float:
    """The delivery service from start, with `n` updates waiting in the log."""
    keys = Keys(prefix, 8)
    client = connect(server_url)
    subs = Subscriptions(client, keys)
    await subs.add(receiver, name="bench", allow_private=True)
    log = Log(client, keys)
    await log.check_partitions()
    updates = _updates(n, 50)  # made once: a call a chunk made all n each time
    for start in range(0, n, 1000):
        await log.append(updates[start : start + 1000])
    cfg = Settings(None, Path("."), prefix, 8)
    svc = create_app(cfg, server_url, policy=RetryPolicy(), concurrency=CONCURRENCY)
    assert svc.app is not None
    begin, cpu = time.perf_counter(), time.process_time()
    await svc.app.start()
    while int((await subs.stats("bench")).get("delivered", 0)) < n:  # noqa: ASYNC110 - another task's progress, in Redis
        await asyncio.sleep(0.01)
    rate = n / (time.perf_counter() - begin)
    CPU["service"].append((time.process_time() - cpu) / n)
    await svc.app.stop()
    await client.aclose()
    return rate


FANOUT_SUBS = 3
BATCH = 500


async def _fan_out_log(client: aioredis.Redis, prefix: str, n: int) -> tuple[Keys, Subscriptions]:
    keys = Keys(prefix, 8)
    subs = Subscriptions(client, keys)
    await subs.add("https://example.org/all", name="all")
    await subs.add("https://example.org/half", name="half", story_prefixes=["story-0"])
    await subs.add("https://example.org/said", name="said", types=["dateline.statement.made"])
    log = Log(client, keys)
    await log.check_partitions()
    updates = _updates(n, 50)  # made once: a call a chunk made all n each time
    for start in range(0, n, 1000):
        await log.append(updates[start : start + 1000])
    return keys, subs


async def _group_batches(client: aioredis.Redis, keys: Keys, group: str) -> list[Batch]:
    """Every partition's entries, read through `group` in batches as the kit reads them."""
    batches = []
    for p, stream in enumerate(keys.logs()):
        await groups.ensure_group(client, stream, group)
        while got := (await groups.read(client, group, "bench", {stream: ">"}, BATCH, None)).get(
            stream
        ):
            entries = [LogEntry(p, eid, f[b"__data__"]) for eid, f in got]
            batches.append(Batch(p, stream, group, entries))
    return batches


async def fan_out_rates(client: aioredis.Redis, prefix: str, n: int) -> tuple[float, float]:
    """Updates a second fanned out to 3 subscriptions, with the acknowledgement: the
    one-`MULTI` way (outbox entries and `XACK` together, which a cluster cannot do)
    against the fan-out's scripts with their marks, then the `XACK`."""
    keys, subs = await _fan_out_log(client, prefix, n)
    registry = await subs.all()
    multi = await _group_batches(client, keys, "multi")
    begin = time.perf_counter()
    for batch in multi:
        pipe = client.pipeline(transaction=True)
        for sub, entries in route(registry, batch.entries):
            for _, fields in entries:
                pipe.xadd(subs.state(sub.name).outbox, fields)  # type: ignore[arg-type]
        batch.ack_in(pipe)
        await pipe.execute()
    multi_rate = n / (time.perf_counter() - begin)
    for sub in registry:
        await client.delete(subs.state(sub.name).outbox)
    scripts = await _group_batches(client, keys, "scripts")
    fanout = Fanout(lambda: subs)
    begin = time.perf_counter()
    for batch in scripts:
        await fanout(batch)
        await client.xack(batch.stream, batch.group, *[e.entry_id for e in batch.entries])
    return multi_rate, n / (time.perf_counter() - begin)


def _receiver(port: int) -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.receiver", "--port", str(port), "--out", "/dev/null"],
        cwd=root,
    )


HTTPCORE_MOST = 3_000
"""Updates a round of the httpcore loop POSTs: at about 900 a second, the whole log's
20,000 would take most of a minute a round."""


async def run(report: Report, *, quick: bool = False) -> None:
    n = 1_000 if quick else 20_000
    rounds = 1 if quick else 3
    configure("warning")
    print(f"deliver: {n:,} updates over 50 stories to one local receiver, {rounds} rounds")
    port = free_port()
    receiver = f"http://127.0.0.1:{port}/hook"
    rates: dict[str, list[float]] = {"raw": [], "httpcore": [], "service": []}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp), fsync="always") as srv:
        proc = _receiver(port)
        try:
            await _listening(port)
            for r in range(rounds):
                rates["service"].append(await service(srv.url, f"bench{r}", receiver, n))
                client = connect(srv.url)
                keys = Keys(f"bench{r}", 8)
                rates["raw"].append(await raw_loop(client, keys, receiver))
                rates["httpcore"].append(
                    await httpcore_loop(client, keys, receiver, most=HTTPCORE_MOST)
                )
                await client.aclose()
        finally:
            proc.terminate()
            proc.wait()
    raw, old, ours = (statistics.median(rates[k]) for k in ("raw", "httpcore", "service"))
    report.add(
        Row(
            "deliver",
            f"raw loop: XRANGE + aiohttp POST, {CONCURRENCY} in flight",
            raw,
            "updates/s",
            note=f"median of rounds: {_listed(rates['raw'])}",
        )
    )
    report.add(
        Row(
            "deliver",
            f"raw loop with httpcore's pool, {CONCURRENCY} in flight",
            old,
            "updates/s",
            baseline="the raw loop",
            ratio=old / raw,
            note=f"the service's HTTP client until 2026-12-04; {HTTPCORE_MOST:,} updates a "
            f"round: {_listed(rates['httpcore'])}",
        )
    )
    report.add(
        Row(
            "deliver",
            "dateline deliver: fan-out, outbox, signed POST, state",
            ours,
            "updates/s",
            baseline="the raw loop",
            ratio=ours / raw,
            note=f"rounds: {_listed(rates['service'])}",
        )
    )
    await _fan_out_rows(report, n=5_000 if quick else 20_000, rounds=rounds)
    raw_cpu, old_cpu, our_cpu = (
        statistics.median(CPU[k]) * 1e6 for k in ("raw", "httpcore", "service")
    )
    report.add(Row("deliver", "CPU a delivery, raw loop (this process)", raw_cpu, "us"))
    report.add(
        Row(
            "deliver",
            "CPU a delivery, raw loop with httpcore's pool (this process)",
            old_cpu,
            "us",
            baseline="the raw loop's CPU",
            ratio=old_cpu / raw_cpu,
        )
    )
    report.add(
        Row(
            "deliver",
            "CPU a delivery, dateline deliver (this process)",
            our_cpu,
            "us",
            baseline="the raw loop's CPU",
            ratio=our_cpu / raw_cpu,
            note="fan-out, outbox, signature and state a delivery, beside the POST",
        )
    )


def _listed(rates: list[float]) -> str:
    return ", ".join(f"{x:,.0f}" for x in rates)


async def _fan_out_rows(report: Report, *, n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp), fsync="always") as srv:
        client = connect(srv.url)
        got = [await fan_out_rates(client, f"fan{r}", n) for r in range(rounds)]
        await client.aclose()
    multi, ours = (sorted(x[i] for x in got)[len(got) // 2] for i in (0, 1))
    report.add(
        Row(
            "deliver",
            f"fan-out to {FANOUT_SUBS} subscriptions, one MULTI a batch",
            multi,
            "updates/s",
            note=f"{n:,} updates, batches of {BATCH}; the way before issue 16",
        )
    )
    report.add(
        Row(
            "deliver",
            f"fan-out to {FANOUT_SUBS} subscriptions, a script each with its mark",
            ours,
            "updates/s",
            baseline="one MULTI a batch",
            ratio=ours / multi,
            note=f"rounds: {', '.join(f'{x[1]:,.0f}' for x in got)}",
        )
    )


async def _listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError("the receiver did not listen")
