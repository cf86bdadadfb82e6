"""The server's instructions an update, counted by callgrind: a figure the VM's speed
does not move.

Every timed row of this bench moves with the machine: the host took 27 to 30% of this
VM's CPU (steal) in one run of 2026-12-02 and under 3% an hour later, and a server-side
change of 5% was lost in that noise. Valgrind's callgrind runs the embedded server and
counts the instructions it executes while a piece of work runs (instrumentation on
only then); run to run they agree to about 1%. Counted here:

- an append, one update a call and batches of 1,000, against raw `XADD`s of the same
  records (the baseline of the `Log.append_stream` row);
- the projector's cycles at 5 updates a cycle (read, recall, commit: the live path),
  against the ceiling loop's (XREADGROUP, a SET a record, XACK);
- and on the Python side, this interpreter under callgrind (`bench/pyinstr.py`): the
  fold alone, a one-process rebuild, the projector in bulk and in its live cycles, an
  update each.

Needs `valgrind` (Debian's package); without it, says so and adds no rows. Under
callgrind the server runs about 50 times slower, so the counts come from small runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis
from tests.e2e.processes import free_port

from bench.harness import Report, Row
from bench.log_append import realistic_updates
from bench.projection import ceiling
from bench.pyinstr import LIVE_STORIES, LONG_STATEMENTS, LONG_STORIES, live_updates
from dateline.projector.app import create_app
from dateline.store.config import Settings
from dateline.store.connection import connect
from dateline.store.embedded import EmbeddedRedis, server_binary
from dateline.store.layout import Keys
from dateline.store.log import Log

PREFIX = "cg"
ROOT = Path(__file__).resolve().parents[1]
STORIES = LIVE_STORIES


@dataclasses.dataclass
class Counted:
    """A server under callgrind whose instrumentation is off until `counting`."""

    process: asyncio.subprocess.Process
    url: str
    out: Path

    @contextlib.asynccontextmanager
    async def counting(self) -> AsyncIterator[None]:
        await self._instrument("on")
        try:
            yield
        finally:
            await self._instrument("off")

    async def _instrument(self, state: str) -> None:
        control = await asyncio.create_subprocess_exec(
            "callgrind_control", "-i", state, str(self.process.pid),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if await control.wait() != 0:
            raise RuntimeError(f"callgrind_control -i {state} failed for the server")

    def total(self) -> int:
        """The instructions counted, once the server has exited."""
        return _total(self.out)


def _total(out: Path) -> int:
    """The instructions a callgrind output file counted."""
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


@contextlib.asynccontextmanager
async def counted_server(tmp: Path, name: str) -> AsyncIterator[Counted]:
    """The embedded server's binary under callgrind, no persistence: the instructions of
    commands, not of the disk. Yields once it answers; on the way out, shut down."""
    port = free_port()
    data = tmp / name
    data.mkdir()
    out = tmp / f"{name}.callgrind"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    command += ["--instr-atstart=no", str(server_binary()), "--port", str(port)]
    command += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(data)]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"redis://127.0.0.1:{port}"
    try:
        probe = connect(url)
        for _ in range(300):  # valgrind takes seconds to start the server
            with contextlib.suppress(OSError, aioredis.ConnectionError):
                await probe.ping()
                break
            await asyncio.sleep(0.1)
        await probe.aclose()
        yield Counted(process, url, out)
        client = connect(url)
        with contextlib.suppress(aioredis.ConnectionError):
            await client.shutdown(nosave=True)
        await client.aclose()
        await asyncio.wait_for(process.wait(), 120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _per_update(
    tmp: Path, name: str, updates: int, work: Callable[[Counted, Log], Awaitable[None]]
) -> float:
    """Instructions an update of `work`, on a server of its own."""
    async with counted_server(tmp, name) as server:
        client = connect(server.url)
        log = Log(client, Keys(PREFIX, 8))
        await log.check_partitions()
        await work(server, log)
        await client.aclose()
    return server.total() / updates


WARM = 16_384
"""Updates in the log before an append is counted: about 2,000 a partition's dedup hash."""


async def _small_hash_bound(client: aioredis.Redis) -> int:
    """The entries up to which the server keeps a hash small (a listpack, searched by
    scanning): Valkey's and Redis 7's name for it, or Redis 6's."""
    for name in ("hash-max-listpack-entries", "hash-max-ziplist-entries"):
        for value in (await client.config_get(name)).values():
            return int(str(value))
    raise RuntimeError("the server names no bound for small hashes")


def _batches(records: list[bytes], size: int) -> list[list[bytes]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


async def _appends(tmp: Path, size: int, calls: int) -> tuple[float, float]:
    """(the append script's instructions an update, raw XADD's), `calls` calls of
    `size` updates each, after a log of `WARM` updates not counted, in batches: the
    streams' first nodes made and each partition's dedup hash past its small encoding,
    as a log in use is. (Warmed with as many updates as were counted, the hashes of
    Valkey 8.1, small up to 512 entries, were small: each dedup lookup a scan of
    hundreds of entries, 8% of a batch's instructions.)"""
    records = realistic_updates(WARM + size * calls)
    warm, counted = _batches(records[:WARM], 1000), _batches(records[WARM:], size)

    async def script(server: Counted, log: Log) -> None:
        for batch in warm:
            await log.append(batch, atomic=False)
        small = await _small_hash_bound(log.redis)
        hashes = [log.keys.ids(p) for p in range(len(log.keys.logs()))]
        if any([await log.redis.hlen(ids) <= small for ids in hashes]):
            raise RuntimeError(f"a dedup hash of the warm log has {small:,} entries or fewer")
        prepared = [log.prepare(batch, atomic=False) for batch in counted]
        # The warm-up's garbage collected now, not by the collector's steps during the
        # count: its debt was 1.4 M instructions (5.0 M with a table an update), 7,000
        # an update of 200 one-update calls.
        await log.redis.eval("collectgarbage('collect')", 0)
        async with server.counting():
            for p in prepared:
                await log.submit(p)

    async def raw(server: Counted, log: Log) -> None:
        streams = log.keys.logs()

        async def xadds(batches: list[list[bytes]]) -> None:
            for n, batch in enumerate(batches):
                pipe = log.redis.pipeline(transaction=False)
                for body in batch:
                    pipe.xadd(streams[n % len(streams)], {"__data__": body})
                await pipe.execute()

        await xadds(warm)
        async with server.counting():
            await xadds(counted)

    ours = await _per_update(tmp, f"append{size}", size * calls, script)
    theirs = await _per_update(tmp, f"xadd{size}", size * calls, raw)
    return ours, theirs


async def _cycles(tmp: Path, steps: int, per: int) -> tuple[float, float]:
    """(the projector's instructions an update, the ceiling loop's): `steps` cycles of
    `per` updates over 2,000 stories that have 3 updates each already."""
    settled, cycles = live_updates(steps * per, "cg", per)

    async def projector(server: Counted, log: Log) -> None:
        for batch in _batches(settled, 1000):
            await log.append(batch, atomic=False)
        settings = Settings.from_env({"REDIS_URL": server.url, "DATELINE_PREFIX": PREFIX})
        app = await create_app(settings, server.url, consumer="cg")
        app.runner.config = dataclasses.replace(app.runner.config, block_ms=10)
        done = 0
        while done < len(settled):
            done += await app.runner.step()
        for step in range(steps):
            await log.append(cycles[step])
            async with server.counting():
                done = 0
                while done < per:
                    done += await app.runner.step()
        await app.runner.release_all()
        await app.client.aclose()

    async def ceiling_loop(server: Counted, log: Log) -> None:
        for batch in _batches(settled, 1000):
            await log.append(batch, atomic=False)
        await ceiling(log.redis, log.keys, len(settled))
        for step in range(steps):
            await log.append(cycles[step])
            async with server.counting():
                await ceiling(log.redis, log.keys, per)

    ours = await _per_update(tmp, "projector", steps * per, projector)
    theirs = await _per_update(tmp, "ceiling", steps * per, ceiling_loop)
    return ours, theirs


async def _python_count(tmp: Path, url: str, what: str, n: int) -> float:
    """This interpreter's instructions an update of `bench/pyinstr.py`'s `what`."""
    out = tmp / f"py-{what}.callgrind"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    command += ["--instr-atstart=no", sys.executable, "-m", "bench.pyinstr", url, what, str(n)]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    stdout, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"bench.pyinstr {what} failed under valgrind ({process.returncode})")
    # Its logs share stdout (a long collection, say): the count is the line that says so.
    lines = [line for line in stdout.decode().splitlines() if line.startswith("counted ")]
    if not lines:
        raise RuntimeError(f"bench.pyinstr {what} did not say what it counted")
    return _total(out) / int(lines[-1].split()[1])


async def _python(report: Report, tmp: Path, n: int, projected: int, live: int) -> None:
    """The fold alone, a one-process rebuild and the projector, counted in Python's
    instructions: the timed rows move with the VM (the fold alone by 1.6x in an hour),
    the rebuild's timed ratio to the fold is far below its counted one (a rebuild reads
    each record once, cold; the fold alone reads a tenth of them three times), and the
    count is what a change to the code moves."""
    with EmbeddedRedis(tmp / "pyinstr", fsync="everysec") as server:
        fold = await _python_count(tmp, server.url, "fold", n)
        rebuild = await _python_count(tmp, server.url, "rebuild", n)
        projector = await _python_count(tmp, server.url, "projector", projected)
        cycles = await _python_count(tmp, server.url, "live", live)
        long = await _python_count(tmp, server.url, "live-long", live)
    scale = f"{n:,} updates over {n // 100:,} stories, the rebuild row's mix; callgrind"
    report.add(
        Row(
            "instructions",
            "Python's instructions an update of the fold alone",
            fold,
            "instructions",
            note=f"decode + project, story by story; {scale}",
        )
    )
    report.add(
        Row(
            "instructions",
            "Python's instructions an update of a full rebuild, one process",
            rebuild,
            "instructions",
            "the fold alone's",
            fold / rebuild,
            note=f"read, decode, fold, write, catch up, switch; {scale}",
        )
    )
    report.add(
        Row(
            "instructions",
            "Python's instructions an update of the projector, newsroom mix",
            projector,
            "instructions",
            note=f"read, recall, fold, commit; {projected:,} updates over {projected // 20:,} "
            "stories, a projector that has kept no state yet (the projector row's case); "
            "callgrind",
        )
    )
    report.add(
        Row(
            "instructions",
            "Python's instructions an update of the projector's live cycles, 5 a cycle",
            cycles,
            "instructions",
            "the projector's in bulk (the row above)",
            projector / cycles,
            note=f"{live:,} updates over 2,000 stories that have 3 each already, appended by "
            "a process callgrind does not follow; what a cycle costs whatever it carries "
            "shows here; callgrind",
        )
    )
    report.add(
        Row(
            "instructions",
            f"same, on stories of {LONG_STATEMENTS} statements",
            long,
            "instructions",
            "the live cycles on stories of 3 (the row above)",
            cycles / long,
            note=f"{live:,} updates over {LONG_STORIES} stories that have {LONG_STATEMENTS} "
            "statements each already; issue 17: a story with hundreds of statements must not "
            "cost more an update than a small one (1.0x); callgrind",
        )
    )


async def run(report: Report, *, quick: bool = False) -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("instructions: skipped, no valgrind here (Debian: apt install valgrind)")
        return
    print("instructions: the server under callgrind; counts an update")
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        for size, calls in ((1, 40 if quick else 400), (1000, 1 if quick else 4)):
            ours, raw = await _appends(where, size, calls)
            what = "one update a call" if size == 1 else f"batches of {size:,}"
            report.add(
                Row(
                    "instructions",
                    f"the server's instructions an append, {what}",
                    ours,
                    "instructions",
                    f"raw XADD of the same records, {what}",
                    raw / ours,
                    note=f"raw XADD: {raw:,.0f}; callgrind, {size * calls:,} updates counted",
                )
            )
        await _python(
            report,
            where,
            5_000 if quick else 20_000,
            2_000 if quick else 10_000,
            200 if quick else 1_000,
        )
        steps = 20 if quick else 200
        ours, ceiling_instructions = await _cycles(where, steps, 5)
        report.add(
            Row(
                "instructions",
                "the server's instructions an update of the projector's cycles, 5 a cycle",
                ours,
                "instructions",
                "the ceiling loop's (XREADGROUP, SET, XACK)",
                ceiling_instructions / ours,
                note=f"ceiling loop: {ceiling_instructions:,.0f}; read, recall, commit; "
                f"{steps} cycles over {STORIES:,} stories",
            )
        )
