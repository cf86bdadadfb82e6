"""The delivery service's acknowledgements written together (`deliver/acks.py`): pure
asyncio, the write a stand-in that records its batches."""

from __future__ import annotations

import asyncio

import pytest

from dateline.deliver.acks import Acknowledgements, Done


class Writes:
    """Records each batch; each write waits until the test lets it go."""

    def __init__(self, fail: set[int] | None = None) -> None:
        self.batches: list[Done] = []
        self.go = asyncio.Event()
        self.fail = fail or set()

    async def __call__(self, batch: Done) -> None:
        self.batches.append(batch)
        await self.go.wait()
        if len(self.batches) - 1 in self.fail:
            raise ConnectionError(f"write {len(self.batches) - 1} failed")


async def test_those_that_come_during_a_write_go_together_in_the_next() -> None:
    writes = Writes()
    acks = Acknowledgements(writes)
    first = asyncio.create_task(acks.add("1-0", 204))
    await asyncio.sleep(0)  # the first write is under way
    later = [asyncio.create_task(acks.add(f"{n}-0", 200)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    assert writes.batches == [[("1-0", 204)]]
    assert not first.done() and not any(t.done() for t in later)  # each waits for its write
    writes.go.set()
    await asyncio.gather(first, *later)
    assert writes.batches == [[("1-0", 204)], [("2-0", 200), ("3-0", 200), ("4-0", 200)]]


async def test_a_failed_write_fails_each_of_its_waiters_and_the_next_still_goes() -> None:
    writes = Writes(fail={0})
    acks = Acknowledgements(writes)
    carried = [asyncio.create_task(acks.add(f"{n}-0", 204)) for n in (1, 2)]
    await asyncio.sleep(0)
    later = asyncio.create_task(acks.add("3-0", 204))
    await asyncio.sleep(0)
    writes.go.set()
    for task in carried:
        with pytest.raises(ConnectionError, match="write 0 failed"):
            await task
    await later
    assert writes.batches == [[("1-0", 204), ("2-0", 204)], [("3-0", 204)]]


async def test_a_waiter_cancelled_leaves_the_write_to_the_others() -> None:
    writes = Writes()
    acks = Acknowledgements(writes)
    gone = asyncio.create_task(acks.add("1-0", 204))
    stays = asyncio.create_task(acks.add("2-0", 204))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    writes.go.set()
    await stays
    assert gone.cancelled()
    assert writes.batches == [[("1-0", 204), ("2-0", 204)]]


async def test_once_idle_a_new_acknowledgement_starts_a_write_of_its_own() -> None:
    writes = Writes()
    writes.go.set()
    acks = Acknowledgements(writes)
    await acks.add("1-0", 204)
    await acks.add("2-0", 200)
    assert writes.batches == [[("1-0", 204)], [("2-0", 200)]]
