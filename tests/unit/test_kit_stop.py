"""The kit's stop ends its subscribers' reading tasks, even one whose cancellation was
lost (`kit._stopped`): pure asyncio, a subscriber that behaves as FastStream's does."""

from __future__ import annotations

import asyncio

from dateline.kit import _stopped


class Reader:
    """A subscriber whose reading task lets its first `lost` cancellations go by, as one
    that lands as redis-py's read completes does on Python 3.11; `stop` cancels once and
    forgets the task, as FastStream's does."""

    def __init__(self, lost: int) -> None:
        self.lost, self.cancels = lost, 0
        self.tasks = [asyncio.create_task(self._read())]

    async def _read(self) -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                self.cancels += 1
                if self.cancels > self.lost:
                    raise

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()


async def test_a_task_whose_cancellation_was_lost_is_cancelled_until_it_ends() -> None:
    reader = Reader(lost=2)
    task = reader.tasks[0]
    await asyncio.sleep(0)
    await _stopped(reader)
    assert task.cancelled()
    assert reader.cancels == 3


async def test_a_stop_that_ends_its_task_is_left_at_that() -> None:
    reader = Reader(lost=0)
    task = reader.tasks[0]
    await asyncio.sleep(0)
    await _stopped(reader)
    assert task.cancelled() and reader.cancels == 1
