"""`cli/common.run_on_uvloop`, which `dateline projector` runs on (its e2e tests start it)."""

from __future__ import annotations

import asyncio

from dateline.cli.common import run_on_uvloop


async def loop_and_answer() -> tuple[str, int]:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__, 42


def test_run_on_uvloop_gives_a_uvloop_loop_and_the_coroutines_answer() -> None:
    module, answer = run_on_uvloop(loop_and_answer())
    assert module.startswith("uvloop")
    assert answer == 42
