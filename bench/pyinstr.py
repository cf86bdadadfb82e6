"""Run under callgrind by `bench/instructions.py`: this process's own instructions while
it folds stories alone, rebuilds them from the log, or projects them as the projector
does, with instrumentation off but for that work.

    valgrind --tool=callgrind --instr-atstart=no python -m bench.pyinstr URL WHAT N

- `fold` and `rebuild` work on the same log (N updates over N/100 stories, the rebuild
  row's mix), each once before it is counted, so imports, first calls and the server's
  first replies are not counted.
- `projector` is the projector row's case (`bench/projection.py`): N updates over N/20
  stories, the newsroom mix, read by a projector that has kept no state yet. It runs
  once on one log, then is counted on a second of the same updates.
- `live` is the live path's case (`bench/instructions.py`'s server count of the
  projector's cycles): 2,000 stories with 3 updates each, projected, then cycles of 5
  new updates each, N updates in all; only the cycles are counted. A cycle's work that
  does not grow with its updates shows here and hardly at all in `projector`.
- `live-long` is the same cycles on 100 long stories, 500 statements each: work that
  grows with the story rather than with the update shows against `live`.

`projector` and `live` run on uvloop, as `dateline projector` does; `fold` and
`rebuild` on asyncio's own loop, as `dateline replay` does.

Prints the updates counted, on a line of its own: `counted N`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import subprocess
import sys
from pathlib import Path

from bench.projection import _load, newsroom_updates
from bench.readside import _update
from dateline.cli.common import run_on_uvloop
from dateline.domain import project
from dateline.projector.app import create_app
from dateline.projector.replay import rebuild_all, story_ids
from dateline.runtime.heap import tune_collector
from dateline.store.config import Settings
from dateline.store.connection import connect
from dateline.store.layout import Keys
from dateline.store.log import Log
from dateline_schemas import decode_records


def _instrument(state: str) -> None:
    subprocess.run(
        ["callgrind_control", "-i", state, str(os.getpid())],
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def _project(url: str, n: int) -> int:
    """The projector's cycles over a log it has not read, from a new app."""
    updates = newsroom_updates(n, max(1, n // 20))
    client = connect(url)
    try:
        for prefix in ("pyinstr-warm", "pyinstr"):
            await _load(client, Keys(prefix, 8), updates)
            settings = Settings(None, Path("."), prefix, 8)
            app = await create_app(settings, url, consumer="pyinstr")
            app.runner.config = dataclasses.replace(app.runner.config, block_ms=10)
            counted, done = prefix == "pyinstr", 0
            if counted:
                _instrument("on")
            while done < n:
                done += await app.runner.step()
            if counted:
                _instrument("off")
            await app.runner.release_all()
            await app.client.aclose()
        return n
    finally:
        await client.aclose()


LIVE_STORIES, LIVE_CYCLE = 2_000, 5
LONG_STORIES, LONG_STATEMENTS = 100, 500
"""The live cycles on long stories (`live-long`): 50,000 statements, inside what the
projector keeps decoded (`projector/commit.py`, `WARM_PARTS`), so that what grows with
a story there is the work of its commits, not a decode of its state."""


def live_updates(
    n: int, case: str, per: int = LIVE_CYCLE, stories: int = LIVE_STORIES, each: int = 3
) -> tuple[list[bytes], list[list[bytes]]]:
    """The live case's updates, over `stories` stories: `each` a story to settle (each
    a statement), then `n` new ones in cycles of `per`. Also the server's count of the
    same cycles (`bench/instructions.py`), so that both count one case."""
    rnd = random.Random(7)
    settled = [_update(i, stories, case) for i in range(each * stories)]
    # Past the settled ones: an id taken already is a duplicate, not appended, and its
    # cycle would wait for it.
    picks = [
        rnd.randrange(each, 10**6 + each) * stories + rnd.randrange(stories)
        for _ in range(max(1, n // per) * per)
    ]
    live = [_update(i, stories, case) for i in picks]
    return settled, [live[i : i + per] for i in range(0, len(live), per)]


def _live_case(what: str, n: int) -> tuple[list[bytes], list[list[bytes]]]:
    """`live_updates` of the `live` case or, for `live-long`, of its long stories."""
    if what.endswith("long"):
        return live_updates(n, "pylong", stories=LONG_STORIES, each=LONG_STATEMENTS)
    return live_updates(n, "pylive")


async def _live(url: str, n: int, what: str) -> int:
    """The projector's cycles of `LIVE_CYCLE` new updates over stories it has projected
    (and so keeps). Each cycle's updates are appended by a process of their own that
    callgrind does not follow (`_append_live`), so what is counted is the projector's
    alone, with counting on from the first cycle to the last."""
    settled, cycles = _live_case(what, n)
    client = connect(url)
    try:
        await client.flushall()
        log = Log(client, Keys("pylive", 8))
        await log.check_partitions()
        for i in range(0, len(settled), 1000):
            await log.append(settled[i : i + 1000], atomic=False)
        settings = Settings.from_env({"REDIS_URL": url, "DATELINE_PREFIX": "pylive"})
        app = await create_app(settings, url, consumer="pylive")
        app.runner.config = dataclasses.replace(app.runner.config, block_ms=10)
        done = 0
        while done < len(settled):
            done += await app.runner.step()
        command = [sys.executable, "-m", "bench.pyinstr", url, f"append-{what}", str(n)]
        # Started before counting, and never awaited while it runs: a blocking call here
        # is a pipe's read, which the count must see as little of as it can.
        feed = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # noqa: ASYNC220
        if feed.stdin is None or feed.stdout is None:
            raise RuntimeError("the live case's feed has no pipes")
        _instrument("on")
        for _ in cycles:
            feed.stdin.write(b"next\n")
            feed.stdin.flush()
            if feed.stdout.readline() != b"appended\n":
                raise RuntimeError("the live case's feed stopped")
            done = 0
            while done < LIVE_CYCLE:
                done += await app.runner.step()
        _instrument("off")
        feed.stdin.close()
        feed.wait()
        await app.runner.release_all()
        await app.client.aclose()
        return len(cycles) * LIVE_CYCLE
    finally:
        await client.aclose()


async def _append_live(url: str, n: int, what: str) -> int:
    """`_live`'s feed: a cycle's updates appended for each line read, then said so."""
    _, cycles = _live_case(what, n)
    client = connect(url)
    try:
        log = Log(client, Keys("pylive", 8))
        for batch in cycles:
            if not sys.stdin.readline():
                break
            results = await log.append(batch)
            if refused := [r for r in results if r.status != "appended"]:
                raise RuntimeError(f"the live case's feed: not appended, {refused}")
            print("appended", flush=True)
        return 0
    finally:
        await client.aclose()


async def main(url: str, what: str, n: int) -> int:
    tune_collector()  # as `dateline replay` and the bench's fold rows do
    if what == "projector":
        return await _project(url, n)
    if what in ("live", "live-long"):
        return await _live(url, n, what)
    if what.startswith("append-live"):
        return await _append_live(url, n, what)
    keys = Keys("pyinstr", 8)
    client = connect(url)
    try:
        log = await _load(client, keys, newsroom_updates(n, max(1, n // 100), seed=11))
        if what == "rebuild":
            await rebuild_all(log, keys)
            _instrument("on")
            result = await rebuild_all(log, keys)
            _instrument("off")
            return result.updates
        stories = await story_ids(client, keys)
        pipe = client.pipeline(transaction=False)
        for story in stories:
            pipe.lrange(keys.story(story), 0, -1)
        histories = list(zip(stories, await pipe.execute(), strict=True))
        for story, history in histories:
            project(story, decode_records(history))
        _instrument("on")
        for story, history in histories:
            project(story, decode_records(history))
        _instrument("off")
        return sum(len(history) for _, history in histories)
    finally:
        await client.aclose()


if __name__ == "__main__":
    # The projector's cases on the loop `dateline projector` runs on (uvloop), the fold
    # and the rebuild on asyncio's own, as `dateline replay` runs.
    work = main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    on_uvloop = sys.argv[2] in ("projector", "live", "live-long")
    counted = run_on_uvloop(work) if on_uvloop else asyncio.run(work)
    if not sys.argv[2].startswith("append-live"):
        print("counted", counted)
