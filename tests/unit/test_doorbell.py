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


async def test_rings_closer_than_the_pace_wake_once_at_its_end_and_none_is_lost() -> None:
    """`pace_s`: a ring within the pace of the last one is gathered, not dropped: the
    waiters wake once, when the pace has passed; a ring after a quiet pace wakes them at
    once."""
    pace = 0.05
    bell = Doorbell(None, "t", pace_s=pace)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    first = bell.current()
    bell.ring()  # quiet before: at once
    assert first.is_set()
    second = bell.current()
    rung = loop.time()
    bell.ring()  # within the pace: gathered ...
    bell.ring()  # ... with this one
    assert not second.is_set()
    assert await bell.wait(second, 5) is True  # not lost
    assert loop.time() - rung >= pace * 0.9  # the timer's own rounding
    third = bell.current()
    assert third is not second  # one wake for both
    await asyncio.sleep(pace * 1.5)
    bell.ring()  # a whole pace since the last: at once
    assert third.is_set()


async def test_without_a_pace_each_ring_wakes_at_once() -> None:
    bell = Doorbell(None, "t")  # type: ignore[arg-type]
    for _ in range(3):
        current = bell.current()
        bell.ring()
        assert current.is_set()
