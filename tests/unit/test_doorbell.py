"""The doorbell's wait gives way to a cancellation, even one that lands as it rings."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from dateline.store.doorbell import Doorbell
from dateline.store.pages import MARK


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


async def test_a_fault_while_listening_is_logged_and_polled_through_not_fatal() -> None:
    """Its task died of any error but a lost connection, and with it every live stream's
    rings, with nothing said until the process stopped."""
    bell = Doorbell(None, "t", poll_s=0.01)  # type: ignore[arg-type]  # no client: a fault
    told: list[tuple[bytes | None, bool]] = []
    bell.listeners.append(lambda message, live: told.append((message, live)))
    with capture_logs() as logs:
        running = asyncio.create_task(bell.run())
        first = bell.current()
        assert await bell.wait(first, 5) is True  # rung, as a lost subscription rings
        await asyncio.sleep(0.05)  # tried again, and again
        assert not running.done()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    failed = [e for e in logs if e["event"].startswith("doorbell failed")]
    assert len(failed) >= 2 and failed[0]["log_level"] == "error"
    assert told and all(t == (None, False) for t in told)


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
    assert third is not second
    await asyncio.sleep(pace * 1.5)
    assert not third.is_set()  # one wake for both: none left waiting on a timer
    bell.ring()  # a whole pace since the last: at once
    assert third.is_set()


async def test_without_a_pace_each_ring_wakes_at_once() -> None:
    bell = Doorbell(None, "t")  # type: ignore[arg-type]
    for _ in range(3):
        current = bell.current()
        bell.ring()
        assert current.is_set()


def partition_of(story: str) -> int:
    return int(story[-1])  # "a1" is in partition 1


async def test_a_story_bell_rings_for_its_story_its_partition_or_all() -> None:
    """A message that names stories rings theirs; one that names none, its partition's;
    one of no partition (a switch, a revocation), all. The doorbell rings each time."""
    bell = Doorbell(None, "t", poll_s=60, partition_of=partition_of)  # type: ignore[arg-type]
    bell.ring()  # the first ring rings every story's bell: none waits yet

    def rings(message: bytes, stories: list[str]) -> list[str]:
        bells = {s: bell.current_story(s) for s in stories}
        everyone = bell.current()
        bell._heard(message)
        bell.ring()
        assert everyone.is_set()
        return [s for s, e in bells.items() if e.is_set()]

    assert rings(b"1:5-0 a1 x1", ["a1", "b1", "c2"]) == ["a1"]
    assert rings(b"1:6-0", ["a1", "b1", "c2"]) == ["a1", "b1"]
    assert rings(b"2:7-0 z2", ["a1", "b1", "c2"]) == []
    assert rings(b"switch", ["a1", "b1", "c2"]) == ["a1", "b1", "c2"]


async def test_story_bells_all_ring_once_a_poll_whatever_is_named() -> None:
    bell = Doorbell(None, "t", poll_s=0.05, partition_of=partition_of)  # type: ignore[arg-type]
    bell.ring()
    quiet = bell.current_story("a1")
    bell._heard(b"2:1-0 b2")
    bell.ring()
    assert not quiet.is_set()  # another story, within the poll
    await asyncio.sleep(0.06)
    bell._heard(b"2:2-0 b2")
    bell.ring()
    assert quiet.is_set()  # a poll since every bell last rang


async def test_without_partitions_a_story_bell_is_the_doorbell() -> None:
    bell = Doorbell(None, "t")  # type: ignore[arg-type]
    assert bell.current_story("a1") is bell.current()


async def test_a_carried_page_goes_to_its_hook_before_the_listeners_hear_the_message() -> None:
    bell = Doorbell(None, "t")  # type: ignore[arg-type]
    told: list[tuple[str, bytes | None]] = []
    bell.pages = lambda page: told.append(("page", page))
    bell.listeners.append(lambda message, live: told.append(("message", message)))
    bell._heard(b"2:5-0 s1" + MARK + b'["v1"]')
    bell._heard(b"2:6-0 s1")
    assert told == [("page", b'["v1"]'), ("message", b"2:5-0 s1"), ("message", b"2:6-0 s1")]


async def test_a_sweep_is_counted_when_every_waiter_is_rung() -> None:
    """A ring that wakes all (the timer's, a switch, a subscription made) may stand for
    messages not heard: a live index stream reads after one (`query/carried.py`)."""
    bell = Doorbell(None, "t", poll_s=60)  # type: ignore[arg-type]
    bell.ring()  # the first ring wakes all (the timer had not rung yet): a sweep
    before = bell.sweeps
    bell._heard(b"2:5-0 s1")
    bell.ring()
    assert bell.sweeps == before
    bell.ring_all()
    assert bell.sweeps == before + 1


async def test_each_ring_tells_its_hooks_after_the_waiters_are_woken() -> None:
    bell = Doorbell(None, "t")  # type: ignore[arg-type]
    woken: list[bool] = []
    waited = bell.current()
    bell.rung.append(lambda: woken.append(waited.is_set()))
    bell.ring()
    bell.ring()
    assert woken == [True, True]
