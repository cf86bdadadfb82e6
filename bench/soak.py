"""The soak: the whole system at a steady rate for a long time, its memory watched.

    python3 dev.py soak --minutes 30            # 500 updates/s, the default
    python3 dev.py soak --minutes 2 --rate 200

Every service runs as its own process on an embedded server (`appendfsync always`):
ingest, validator, projector, query and deliver (with one subscriber, a receiver
process). A publisher posts batches over HTTP at the rate; readers ask for stories;
live streams follow the index and single stories. Each minute it takes every process's
RSS, the server's memory, the projection's lag and the p99 from an HTTP append to its
update on the live index stream. At the end: a table and a picture under
`bench/results/` (soak.md, soak.png), each process's growth after the warm-up, the
server's memory per update and how long 40,000 updates a day fit in 8 GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from tests.e2e.processes import DATELINE, free_port
from tests.factories import encode, update

from bench.harness import RESULTS
from dateline.ingest.credentials import Credentials
from dateline.store.embedded import EmbeddedRedis
from dateline.store.layout import Keys
from dateline.store.log import Log
from dateline.store.readers import Readers
from dateline.store.subscriptions import Subscriptions

PREFIX, STORIES, BATCH = "soak", 10_000, 25
GIB8 = 8 * 2**30
WARMUP_MIN = 5


@dataclass
class Sample:
    minute: float
    rss_mb: dict[str, float]
    server_mb: float
    updates: int
    lag: int
    p99_ms: float | None


@dataclass
class Soak:
    samples: list[Sample] = field(default_factory=list)
    sent: dict[str, float] = field(default_factory=dict)
    """update id -> when its POST was sent"""
    latencies: list[float] = field(default_factory=list)
    posted: int = 0
    errors: int = 0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _update(n: int, rng: random.Random) -> bytes:
    story = f"soak-{rng.randrange(STORIES):05d}"
    if n % 10 == 0:
        return encode(
            update(
                "dateline.schedule.announced",
                subject=story,
                id=f"s{n}",
                source="urn:feed:soak",
                data={
                    "item": f"item-{n % 7}",
                    "title": "Briefing",
                    "starts_at": "2019-02-28T16:00:00+07:00",
                },
            )
        )
    return encode(
        update(
            "dateline.statement.made",
            subject=story,
            id=f"s{n}",
            source="urn:feed:soak",
            data={"statement": f"st{n}", "speaker": "Kim Jong Un", "text": f"said {n}"},
        )
    )


async def publisher(base: str, token: str, rate: float, until: float, soak: Soak) -> None:
    rng = random.Random(7)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/x-ndjson"}
    interval, n = BATCH / rate, 0
    next_at = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as http:
        while time.monotonic() < until:
            lines = []
            for _ in range(BATCH):
                n += 1
                lines.append(_update(n, rng))
            now = time.time()
            for i in range(n - BATCH + 1, n + 1):
                soak.sent[f"s{i}"] = now
            try:
                r = await http.post(
                    f"{base}/v1/updates", content=b"\n".join(lines), headers=headers
                )
                soak.posted += BATCH if r.status_code == 202 else 0
                soak.errors += r.status_code != 202
            except httpx.HTTPError:
                soak.errors += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def follow(
    url: str,
    until: float,
    auth: dict[str, str],
    on_line: Callable[[str], None] | None = None,
) -> int:
    """Read a live stream until `until`, reconnecting when it drops; returns reconnects."""
    reconnects = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, until - time.monotonic())):
            timeout = httpx.Timeout(10, read=60)
            async with httpx.AsyncClient(timeout=timeout, headers=auth) as http:
                while True:
                    try:
                        async with http.stream("GET", url) as stream:
                            if stream.status_code in (401, 403):
                                raise RuntimeError(f"the soak's live stream was refused: {url}")
                            async for line in stream.aiter_lines():
                                if on_line is not None:
                                    on_line(line)
                    except httpx.HTTPError:
                        pass
                    reconnects += 1
                    await asyncio.sleep(0.5)
    return reconnects


def latency_probe(soak: Soak) -> Callable[[str], None]:
    """When each update shows on the live index stream, against when it was posted."""
    event = [""]

    def on_line(line: str) -> None:
        if line.startswith("event:"):
            event[0] = line[6:].strip()
        elif line.startswith("data:") and event[0] == "update":
            ident = json.loads(line[5:])["id"]
            if (sent := soak.sent.pop(ident, None)) is not None:
                soak.latencies.append((time.time() - sent) * 1000)

    return on_line


async def reader(base: str, until: float, auth: dict[str, str]) -> None:
    rng = random.Random()
    async with httpx.AsyncClient(timeout=10, headers=auth) as http:
        while time.monotonic() < until:
            with contextlib.suppress(httpx.HTTPError):
                r = await http.get(f"{base}/v1/stories/soak-{rng.randrange(STORIES):05d}")
                if r.status_code in (401, 403):  # a soak that reads nothing measures nothing
                    raise RuntimeError(f"the soak's reader was refused: {r.text}")
            await asyncio.sleep(0.1)


async def sampler(
    procs: dict[str, int], admin: aioredis.Redis, keys: Keys, soak: Soak, until: float
) -> None:
    start = time.monotonic()
    while time.monotonic() < until:
        await asyncio.sleep(min(60.0, max(1.0, until - time.monotonic())))
        memory = await admin.info("memory")
        lag = 0
        for p in range(keys.partitions):
            for info in await admin.xinfo_groups(keys.log(p)):
                if info["name"] in (b"projector-v1", "projector-v1"):
                    lag += int(info.get("lag") or 0) + int(info.get("pending") or 0)
        window, soak.latencies = soak.latencies, []
        p99 = sorted(window)[int(len(window) * 0.99)] if window else None
        soak.samples.append(
            Sample(
                minute=round((time.monotonic() - start) / 60, 2),
                rss_mb={name: round(rss_mb(pid), 1) for name, pid in procs.items()},
                server_mb=round(int(memory["used_memory"]) / 2**20, 1),
                updates=soak.posted,
                lag=lag,
                p99_ms=round(p99, 1) if p99 is not None else None,
            )
        )
        s = soak.samples[-1]
        print(
            f"  {s.minute:5.1f} min  {s.updates:>9,} updates  server {s.server_mb:7.1f} MB  "
            f"lag {s.lag:>6}  p99 {s.p99_ms} ms  "
            + "  ".join(f"{k} {v:.0f}" for k, v in s.rss_mb.items()),
            flush=True,
        )


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=out)


def _children(
    env: dict[str, str], workdir: Path, ingest_port: int, query_port: int, receiver_port: int
) -> dict[str, subprocess.Popen[bytes]]:
    root = Path(__file__).resolve().parents[1]
    receiver = [sys.executable, "-m", "tests.e2e.receiver", "--port", str(receiver_port)]
    return {
        "ingest": _spawn(
            [str(DATELINE), "ingest", "--port", str(ingest_port)], env, workdir / "ingest.log"
        ),
        "validator": _spawn([str(DATELINE), "validator"], env, workdir / "validator.log"),
        "projector": _spawn([str(DATELINE), "projector"], env, workdir / "projector.log"),
        "query": _spawn(
            [str(DATELINE), "query", "--port", str(query_port)], env, workdir / "query.log"
        ),
        "deliver": _spawn([str(DATELINE), "deliver"], env, workdir / "deliver.log"),
        "receiver": subprocess.Popen([*receiver, "--out", "/dev/null"], cwd=root),
    }


async def run(
    minutes: float, rate: float, workdir: Path, settings: dict[str, str] | None = None
) -> Soak:
    """`settings`: `DATELINE_` variables for every service (the caller's own are not
    passed on: a soak measures what it says it ran)."""
    server = EmbeddedRedis(workdir / "redis", fsync="always")
    await asyncio.to_thread(server.start)
    admin = aioredis.Redis.from_url(server.url)
    keys = Keys(PREFIX, 8)
    await Log(admin, keys).check_partitions()
    token = await Credentials(admin, PREFIX).add("soak", "urn:feed:soak")
    auth = {"authorization": f"Bearer {await Readers(admin, PREFIX).add('soak')}"}
    receiver_port, ingest_port, query_port = free_port(), free_port(), free_port()
    await Subscriptions(admin, keys).add(
        f"http://127.0.0.1:{receiver_port}/hook", name="desk", allow_private=True
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DATELINE_")},
        "REDIS_URL": server.url,
        "DATELINE_PREFIX": PREFIX,
        "DATELINE_LOG_FORMAT": "json",
        **(settings or {}),
    }
    children = _children(env, workdir, ingest_port, query_port, receiver_port)
    procs = {name: p.pid for name, p in children.items()}
    assert server.process is not None
    procs["valkey"] = server.pid
    soak = Soak()
    try:
        ingest, query = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{query_port}"
        await _ready([ingest, query])
        until = time.monotonic() + minutes * 60
        await asyncio.gather(
            publisher(ingest, token, rate, until, soak),
            follow(f"{query}/v1/live?limit=10", until, auth, latency_probe(soak)),
            *(reader(query, until, auth) for _ in range(3)),
            *(follow(f"{query}/v1/stories/soak-{n:05d}/live", until, auth) for n in range(5)),
            sampler(procs, admin, keys, soak, until),
            return_exceptions=False,
        )
    finally:
        for p in children.values():
            p.terminate()
        for p in children.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        await admin.aclose()
        server.stop()
    return soak


async def _ready(bases: list[str]) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        for base in bases:
            for _ in range(300):
                try:
                    if (await http.get(f"{base}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)


def write(
    soak: Soak, minutes: float, rate: float, out: Path = RESULTS, told: str = ""
) -> tuple[Path, Path]:
    import matplotlib  # noqa: PLC0415 - a dev dependency, only for the picture

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    samples = soak.samples
    names = list(samples[0].rss_mb) if samples else []
    warm = next((s for s in samples if s.minute >= WARMUP_MIN), samples[0] if samples else None)
    last = samples[-1] if samples else None
    lines = [
        f"# Soak: {minutes:g} min at {rate:g} updates/s",
        "",
        *([f"Settings: `{told}`.", ""] if told else []),
        f"{soak.posted:,} updates appended over HTTP, {soak.errors} failed requests.",
        "",
        "| minute | updates | server MB | lag | p99 append to live index (ms) | "
        + " | ".join(f"{n} RSS MB" for n in names)
        + " |",
        "|---:|---:|---:|---:|---:|" + "---:|" * len(names),
    ]
    for s in samples:
        lines.append(
            f"| {s.minute} | {s.updates:,} | {s.server_mb} | {s.lag} | {s.p99_ms} | "
            + " | ".join(str(s.rss_mb[n]) for n in names)
            + " |"
        )
    if warm and last and last is not warm:
        lines += ["", f"Growth from minute {warm.minute} (after the warm-up) to {last.minute}:", ""]
        for n in names:
            grew = (last.rss_mb[n] - warm.rss_mb[n]) / max(warm.rss_mb[n], 0.1) * 100
            lines.append(f"- {n}: {warm.rss_mb[n]} MB to {last.rss_mb[n]} MB ({grew:+.1f}%)")
        per = (
            (last.server_mb - samples[0].server_mb)
            * 2**20
            / max(1, last.updates - samples[0].updates)
        )
        days = GIB8 / max(per, 1) / 40_000
        lines += [
            "",
            f"Server memory per update: {per:,.0f} bytes (the log, its dedup hash and story "
            f"lists, and the read models). 40,000 updates a day fill 8 GiB in about "
            f"{days:,.0f} days.",
        ]
    md = out / "soak.md"
    md.write_text("\n".join(lines) + "\n")
    png = out / "soak.png"
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    minutes_axis = [s.minute for s in samples]
    for n in names:
        ax1.plot(minutes_axis, [s.rss_mb[n] for s in samples], label=f"{n} RSS")
    ax1.plot(minutes_axis, [s.server_mb for s in samples], "k--", label="server used_memory")
    ax1.set_ylabel("MB")
    ax1.legend(loc="upper left", fontsize="small")
    ax1.set_title(f"dateline soak: {rate:g} updates/s, appendfsync always")
    ax2.plot(minutes_axis, [s.p99_ms or 0 for s in samples], label="p99 append to live index")
    ax2.set_ylabel("ms")
    ax2.set_xlabel("minutes")
    ax2.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return md, png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=500.0, help="updates a second")
    parser.add_argument("--workdir", type=Path, default=None, help="the services' logs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where soak.md and soak.png go")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="DATELINE_NAME=VALUE",
        help="a setting for every service, such as DATELINE_PROJECTOR_WARM_MB=256 (repeatable)",
    )
    args = parser.parse_args()
    settings = dict(pair.split("=", 1) for pair in args.set if "=" in pair)
    if bad := [p for p in args.set if "=" not in p or not p.startswith("DATELINE_")]:
        parser.error(f"--set takes DATELINE_NAME=VALUE, got {bad[0]!r}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dateline-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    told = " ".join(args.set)
    print(
        f"soak: {args.minutes:g} min at {args.rate:g} updates/s{'; ' + told if told else ''}; "
        f"logs in {workdir}",
        flush=True,
    )
    soak = asyncio.run(run(args.minutes, args.rate, workdir, settings))
    md, png = write(soak, args.minutes, args.rate, args.out, told)
    print(md.read_text())
    print(f"wrote {md} and {png}")


if __name__ == "__main__":
    main()
