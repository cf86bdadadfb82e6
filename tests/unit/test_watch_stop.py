"""`dateline status --watch` ends on its stop event, not on a cancellation landing
wherever the loop happens to be (`cli/ops_cmd.py`, `_unless`)."""

from __future__ import annotations

import asyncio

import pytest

from dateline.cli.ops_cmd import _unless


async def test_a_step_that_ends_first_gives_its_result() -> None:
    stop = asyncio.Event()
    assert await _unless(stop, asyncio.sleep(0, "report")) == "report"


async def test_a_step_that_fails_first_raises_its_failure() -> None:
    async def unreachable() -> None:
        raise ConnectionError("Redis at 127.0.0.1:1 cannot be reached")

    with pytest.raises(ConnectionError, match="cannot be reached"):
        await _unless(asyncio.Event(), unreachable())


async def test_a_stop_first_cancels_the_step_waits_for_it_and_gives_none() -> None:
    stop = asyncio.Event()
    began, ended = asyncio.Event(), []

    async def report() -> str:
        began.set()
        try:
            await asyncio.sleep(60)
        finally:
            ended.append("cleaned up")  # its connection closed before the watch ends
        return "never"

    async def ctrl_c() -> None:
        await began.wait()
        stop.set()

    ctrl = asyncio.ensure_future(ctrl_c())
    assert await asyncio.wait_for(_unless(stop, report()), 5) is None
    assert ended == ["cleaned up"]
    await ctrl


async def test_a_step_that_fails_as_it_is_cancelled_is_not_raised() -> None:
    """The watch is ending: what a report raised on its way out is no news."""
    stop = asyncio.Event()
    stop.set()

    async def report() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise ConnectionError("closed under it") from None
        return "never"

    assert await _unless(stop, report()) is None
