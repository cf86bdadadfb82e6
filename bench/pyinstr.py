"""Run under callgrind by `bench/instructions.py`: this process's own instructions while
it folds stories alone, or rebuilds them from the log, with instrumentation off but
for that work.

    valgrind --tool=callgrind --instr-atstart=no python -m bench.pyinstr URL fold|rebuild N

Both work on the same log (N updates over N/100 stories, the rebuild row's mix), each
once before it is counted, so imports, first calls and the server's first replies are
not counted. Prints the updates counted, on a line of its own: `counted N`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from bench.projection import _load, newsroom_updates
from dateline.domain import project
from dateline.projector.replay import rebuild_all, story_ids
from dateline.runtime.heap import tune_collector
from dateline.store.connection import connect
from dateline.store.layout import Keys
from dateline_schemas import decode_records


def _instrument(state: str) -> None:
    subprocess.run(
        ["callgrind_control", "-i", state, str(os.getpid())],
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def main(url: str, what: str, n: int) -> int:
    tune_collector()  # as `dateline replay` and the bench's fold rows do
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
