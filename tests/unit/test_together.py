"""Steps side by side: every one finished before a failure reaches the caller."""

from __future__ import annotations

import asyncio

import pytest

from dateline.store.together import gathered, side_by_side


async def _after(seconds: float, value: int, landed: list[int]) -> int:
    await asyncio.sleep(seconds)
    landed.append(value)
    return value


async def _word(seconds: float, value: str) -> str:
    await asyncio.sleep(seconds)
    return value


async def _fails(message: str) -> int:
    await asyncio.sleep(0)
    raise RuntimeError(message)


async def test_the_results_come_back_in_the_order_asked() -> None:
    landed: list[int] = []
    assert await gathered(_after(0.02, 1, landed), _after(0, 2, landed)) == [1, 2]
    assert landed == [2, 1]


async def test_a_failure_is_raised_only_once_the_slower_steps_landed() -> None:
    """`asyncio.gather` would raise at once, with the slow write still on its way."""
    landed: list[int] = []
    with pytest.raises(RuntimeError, match="broken"):
        await gathered(_fails("broken"), _after(0.05, 1, landed))
    assert landed == [1]


async def test_the_first_failure_is_raised_and_the_others_are_in_its_notes() -> None:
    with pytest.raises(RuntimeError, match="first") as raised:
        await gathered(_fails("first"), _after(0, 1, []), _fails("second"))
    assert raised.value.__notes__ == ["alongside it, another step failed: RuntimeError('second')"]


async def test_cancelling_the_caller_cancels_every_step() -> None:
    landed: list[int] = []
    waiting = asyncio.ensure_future(gathered(_after(5, 1, landed), _after(5, 2, landed)))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0.01)
    assert landed == []


async def test_steps_of_different_types_come_back_as_a_tuple_in_the_order_asked() -> None:
    landed: list[int] = []
    assert await side_by_side(_after(0.02, 1, landed), _word(0, "two")) == (1, "two")
    three = await side_by_side(_word(0.01, "a"), _after(0, 2, landed), _word(0, "c"))
    assert three == ("a", 2, "c")


async def test_reads_side_by_side_name_every_failure_once_all_have_ended() -> None:
    """A bare `gather` would raise the first, with the slow read still going, and mark
    the second retrieved: no log would ever show it."""
    landed: list[int] = []
    with pytest.raises(RuntimeError, match="first") as raised:
        await side_by_side(_fails("first"), _after(0.05, 1, landed), _fails("second"))
    assert landed == [1]
    assert raised.value.__notes__ == ["alongside it, another step failed: RuntimeError('second')"]
