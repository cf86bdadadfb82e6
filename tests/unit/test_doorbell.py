"""The doorbell's wait gives way to a cancellation, even one that lands as it rings."""

from __future__ import annotations

import asyncio

import pytest

from dateline.store.doorbell import Doorbell


async def test_a_cancellation_as_the_bell_rings_is_not_lost() -> None:
    """On Python 3.11 `asyncio.wait_for` returned normally here about half the time, and
    the stream that waited went on after its client had gone (a hang in the tests)."""
    bell = Doorbell(None, "t")  # type: ignore[arg-type]  # run() alone needs a client
    for _ in range(200):
        waiting = asyncio.create_task(bell.wait(bell.current(), 5))
        await asyncio.sleep(0)  # it waits on the bell now
        bell.ring()  # the bell rings ...
        waiting.cancel()  # ... and the client goes, in the same turn of the loop
        with pytest.raises(asyncio.CancelledError):
            await waiting


async def test_it_says_whether_it_rang() -> None:
    bell = Doorbell(None, "t")  # type: ignore[arg-type]
    assert await bell.wait(bell.current(), 0.01) is False
    current = bell.current()
    asyncio.get_running_loop().call_later(0.01, bell.ring)
    assert await bell.wait(current, 5) is True
