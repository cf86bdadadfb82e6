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

Prints the updates counted, on a line of its own: `counted N`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from bench.projection import _load, newsroom_updates
from dateline.domain import project
from dateline.projector.app import create_app
from dateline.projector.replay import rebuild_all, story_ids
from dateline.runtime.heap import tune_collector
from dateline.store.config import Settings
from dateline.store.connection import connect
from dateline.store.layout import Keys
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


async def main(url: str, what: str, n: int) -> int:
    tune_collector()  # as `dateline replay` and the bench's fold rows do
    if what == "projector":
        return await _project(url, n)
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
    print("counted", asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
