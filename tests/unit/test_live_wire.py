"""The event streams' wire format: what one page of events becomes on the socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from dateline.query import live
from dateline.query.live import KEEPALIVE, LiveStreams, Push, wire
from dateline.runtime.metrics import LIVE_CLIENTS
from tests.e2e.sse import events


async def test_a_page_is_one_write_that_parses_back_to_its_events() -> None:
    async def pages() -> AsyncIterator[list[Push]]:
        yield [Push("update", b'{"n":1}', "0:1-0"), Push("state", b'{"v":1}', "0:1-0")]
        yield []  # nothing new for a while
        yield [Push("update", b'{"n":2}', "1:5-0")]

    clients = LIVE_CLIENTS._value.get()
    chunks = []
    async for chunk in wire(pages()):
        assert LIVE_CLIENTS._value.get() == clients + 1  # counted while open
        chunks.append(chunk)
    assert LIVE_CLIENTS._value.get() == clients
    assert len(chunks) == 3
    assert chunks[1] == KEEPALIVE
    parsed = events(httpx.Response(200, content=b"".join(chunks)))
    got = [(e.event, e.id, e.json()) async for e in parsed]
    assert got == [
        ("update", "0:1-0", {"n": 1}),
        ("state", "0:1-0", {"v": 1}),
        ("update", "1:5-0", {"n": 2}),
    ]


def test_an_event_without_an_id_writes_no_id_line() -> None:
    # An id line, even empty, would reset the client's Last-Event-ID; none is written.
    assert Push("index", b"[]", None).wire() == b"event: index\r\ndata: []\r\n\r\n"


async def test_a_page_is_emptied_once_joined_so_its_makers_do_not_hold_it() -> None:
    """The generators that yielded a page hold it while the client takes its bytes (up
    to `SLOW_CLIENT_S`) and while they wait for the next; emptied, they hold no pushes."""
    made: list[list[Push]] = []

    async def pages() -> AsyncIterator[list[Push]]:
        for n in range(2):
            made.append([Push("update", b'{"n":%d}' % n, f"0:{n}-0")])
            yield made[-1]

    async for chunk in wire(pages()):
        assert made[-1] == [] and b'"n":' in chunk
    assert len(made) == 2


async def test_streams_ended_one_by_one_below_a_burst_reclaim_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "RECLAIM_DELAY_S", 0.01)
    reclaims: list[int] = []

    def reclaim() -> tuple[int, bool]:
        reclaims.append(streams.open)
        return 0, True

    streams = LiveStreams(10_000, reclaim=reclaim)

    async def pages() -> AsyncIterator[list[Push]]:
        yield []

    async def one() -> None:
        async for _ in wire(pages(), streams):
            pass

    await asyncio.gather(*(one() for _ in range(live.RECLAIM_AFTER - 1)))
    await asyncio.sleep(0.05)
    assert (reclaims, streams.open) == ([], 0)
    await one()  # the burst's last: one reclaim, after the delay
    assert reclaims == []
    await asyncio.sleep(0.05)
    assert reclaims == [0]
