"""append_stream: pipelined batches on one connection keep input order and every guarantee."""

from __future__ import annotations

import pytest

from dateline.store.log import BatchTooLarge, Log
from tests.factories import encode, update


async def test_batches_land_in_input_order(log: Log) -> None:
    docs = [encode(update(subject=f"s{i % 3}", id=f"u{i}")) for i in range(2500)]
    batches = [docs[i : i + 300] for i in range(0, 2500, 300)]
    seen = [r async for results in log.append_stream(batches) for r in results]
    assert [r.id for r in seen] == [f"u{i}" for i in range(2500)]
    assert {r.status for r in seen} == {"appended"}
    for s in range(3):
        records = await log.read_story(f"s{s}")
        assert [r.id for r in records] == [f"u{i}" for i in range(s, 2500, 3)]
        assert [r.version for r in records] == list(range(1, len(records) + 1))


async def test_refusals_inside_a_stream(log: Log) -> None:
    """All-invalid batches and atomic refusals never reach the server, and keep their place."""
    batches = [
        [encode(update(id="a"))],
        [b"{", b"[]"],
        [encode(update(id="b")), encode(update(id="c", expectedversion=0))],
        [encode(update(id="a"))],
    ]
    got = [[r.status for r in results] async for results in log.append_stream(batches, atomic=True)]
    assert got == [["appended"], ["invalid", "invalid"], ["aborted", "conflict"], ["duplicate"]]
    assert [r.id for r in await log.read_story("hanoi-summit-2019")] == ["a"]


async def test_a_failure_mid_stream_leaves_the_log_usable(log: Log) -> None:
    """An error stops the stream; what was sent before it landed, and the client still works."""
    too_many = [encode(update())] * 1001
    batches = [[encode(update(id="first"))], too_many, [encode(update(id="never"))]]
    with pytest.raises(BatchTooLarge):
        async for _ in log.append_stream(batches):
            pass
    assert [r.id for r in await log.read_story("hanoi-summit-2019")] == ["first"]
    [after] = await log.append([encode(update(id="after"))])
    assert (after.status, after.version) == ("appended", 2)


async def test_stopping_early_drops_no_reply_on_a_reused_connection(log: Log) -> None:
    stream = log.append_stream([[encode(update(id=f"x{i}"))] for i in range(5)])
    first = await anext(stream)
    await stream.aclose()  # a reply may still be pending: that connection must not be reused
    assert first[0].status == "appended"
    for i in range(20):  # every pooled connection answers its own command
        assert await log.version("hanoi-summit-2019") == len(
            await log.read_story("hanoi-summit-2019")
        )
        [r] = await log.append([encode(update(id=f"y{i}"))])
        assert r.status == "appended"
