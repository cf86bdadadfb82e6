"""`dateline status` and the operations page on a projection far behind: the lag counted
by the group (what the report reads where the server keeps the count) against reading
the entries past the checkpoint, up to `LAG_SCAN` a partition (what it read before, and
still does on Redis 6.2), same run, alternated.

The log on an embedded server, 8 partitions, the projection's group made and nothing
projected: every entry is behind. The operations page asks for the report every 2 s
while it is open, the moment on call opens it being the moment the log's server is
busiest.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.harness import Report, Row
from bench.readside import _update
from dateline.runtime import status
from dateline.store.connection import connect
from dateline.store.embedded import EmbeddedRedis
from dateline.store.layout import Keys, group_of
from dateline.store.log import Log
from dateline.store.readmodels import ReadModels

PREFIX = "status"


async def run(report: Report, *, quick: bool = False) -> None:
    behind, rounds, calls = (8_000, 3, 5) if quick else (100_000, 5, 10)
    print(f"status: the lag of {behind:,} updates waiting, {rounds} rounds of {calls} reads a way")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp), fsync="everysec") as srv:
        client = connect(srv.url)
        keys = Keys(PREFIX, 8)
        log = Log(client, keys)
        await log.check_partitions()
        group = group_of("v1")
        for p in range(keys.partitions):
            await client.xgroup_create(keys.log(p), group, id="0", mkstream=True)
        for n in range(0, behind, 1_000):
            await log.append([_update(n + i, 2_000, "mixed") for i in range(1_000)])
        models = ReadModels(keys, "v1")

        async def lags(counted: bool) -> tuple[int, float]:
            """The lag of all partitions, and the CPU of this process it took, a call."""
            found = 0
            began = time.process_time()
            if counted:  # one pipeline for every partition
                reads = await status.partition_reads(client, keys, group, {})
                found = sum(status.lag_counted(read, None) or 0 for read in reads)
            else:
                for p in range(keys.partitions):
                    found += (await status.lag_read(client, keys.log(p), None))[0]
            return found, time.process_time() - began

        by: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        found: dict[bool, int] = {}
        for r in range(rounds):
            for counted in (True, False) if r % 2 == 0 else (False, True):
                began = time.perf_counter()
                spent = 0.0
                for _ in range(calls):
                    found[counted], took = await lags(counted)
                    spent += took
                by[counted].append(calls / (time.perf_counter() - began))
                cpu[counted].append(1000 * spent / calls)
        began = time.perf_counter()
        for _ in range(calls):
            whole = await status.report(client, keys, models)
        reports = calls / (time.perf_counter() - began)
        assert sum(row.lag for row in whole.partitions) == found[True] == behind
        await client.aclose()
    by_count, by_read = statistics.median(by[True]), statistics.median(by[False])
    report.add(
        Row(
            "status",
            f"the lag of {behind:,} updates waiting over 8 partitions, counted by the group",
            by_count,
            "counts/s",
            "the entries read, up to 10,000 a partition",
            by_count / by_read,
            f"{statistics.median(cpu[True]):.2f} ms of this process a count against "
            f"{statistics.median(cpu[False]):.1f}; read, the lag said {found[False]:,}; "
            f"runs alternated: "
            + ", ".join(f"{a:,.0f}/{b:,.1f}" for a, b in zip(by[True], by[False], strict=True)),
        )
    )
    report.add(
        Row(
            "status",
            f"the whole report (`dateline status`, `GET /v1/status`), {behind:,} behind",
            reports,
            "reports/s",
        )
    )
