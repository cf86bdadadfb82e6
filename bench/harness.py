"""What every benchmark shares: repeated timing, medians, and the results files."""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import msgspec
import redis.asyncio as aioredis

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    benchmark: str
    case: str
    value: float
    unit: str
    baseline: str = ""
    ratio: float | None = None
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    code_changed: list[str] = field(default_factory=list)
    """Files of the services' code written while the run went on: its figures are then
    of more than one version of it, and the results say so first."""

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        ratio = f"  ({row.ratio:.2f}x {row.baseline})" if row.ratio is not None else ""
        note = f"  [{row.note}]" if row.note else ""
        print(f"  {row.case:<52} {row.value:>12,.1f} {row.unit}{ratio}{note}", flush=True)
        return row

    def write(self, out: Path = RESULTS) -> tuple[Path, Path]:
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "python": platform.python_version(),
            "machine": platform.machine(),
        }
        json_path = out / "results.json"
        if self.code_changed:
            meta["code_changed"] = ", ".join(self.code_changed)
        json_path.write_bytes(
            msgspec.json.format(msgspec.json.encode({"meta": meta, "rows": self.rows}), indent=2)
        )
        lines = [
            f"Benchmarks, {meta['when']}, Python {meta['python']} on {meta['machine']}",
            "",
        ]
        if self.code_changed:
            lines += [
                "**The services' code changed during this run** (a file written: "
                f"{', '.join(self.code_changed[:10])}): its figures are of more than one "
                "version of it.",
                "",
            ]
        lines += [
            "| benchmark | case | value | unit | ratio | against | note |",
            "|---|---|---:|---|---:|---|---|",
        ]
        for r in self.rows:
            ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
            lines.append(
                f"| {r.benchmark} | {r.case} | {r.value:,.1f} | {r.unit} | {ratio} "
                f"| {r.baseline} | {r.note} |"
            )
        md_path = out / "results.md"
        md_path.write_text("\n".join(lines) + "\n")
        return json_path, md_path


async def median_rate(
    runs: int, items: int, once: Callable[[], Awaitable[None]], reset: Callable[[], Awaitable[None]]
) -> float:
    """Median items/s over `runs` timed calls of `once`, each after an untimed `reset`."""
    rates = []
    for _ in range(runs):
        await reset()
        start = time.perf_counter()
        await once()
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


async def alternated_rates(
    runs: int,
    items: int,
    loops: Sequence[Callable[[], Awaitable[None]]],
    reset: Callable[[], Awaitable[None]],
) -> list[list[float]]:
    """Each loop's items/s over `runs` rounds, the loops taking turns within a round,
    each run after an untimed `reset`: the VM's speed drifts within a minute, and one
    side's runs all before the other's put that drift in their ratio."""
    got: list[list[float]] = [[] for _ in loops]
    for _ in range(runs):
        for rates, loop in zip(got, loops, strict=True):
            rates.append(await median_rate(1, items, loop, reset))
    return got


async def log_records(client: aioredis.Redis, streams: Sequence[str]) -> list[bytes]:
    """Every record of these log streams, stream by stream, each in log order."""
    records = []
    for stream in streams:
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrange(stream))
        records += [fields[b"__data__"] for _, fields in entries]
    return records


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) the processes `pids` have used so far (/proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def rewritten(client: aioredis.Redis) -> None:
    """Rewrite the server's AOF and wait until it is done. A case's writes would set off
    a rewrite in the case after it (the server's own rule), or the embedded server's
    watcher would start one in the quiet of a case that writes nothing (`store/aof.py`):
    the 100 hot stories met one, with a core and the disk taken by its child, in their
    first round in two runs out of three (stop 42). So a timed case starts from a
    rewritten AOF; a case's own rewrites still count, and the rows say how many."""
    # Polls: the rewrite is the server's, which tells no one when it ends.
    while await rewriting(client):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await client.bgrewriteaof()
    while await rewriting(client):  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def rewriting(client: aioredis.Redis) -> bool:
    info = await client.info("persistence")
    return bool(int(info["aof_rewrite_in_progress"]) or int(info["aof_rewrite_scheduled"]))
