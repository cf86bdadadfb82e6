"""The HTTP services' transport: a response's head and body go out in one write."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from dateline.web.server import JOIN_MAX, Coalesced


class Recording:
    """What a socket transport is asked to do, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, data: list[bytes]) -> None:
        self.calls.append(("writelines", data))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append(("write_eof", None))

    def abort(self) -> None:
        self.calls.append(("abort", None))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def coalesced() -> tuple[Coalesced, Recording]:
    inner = Recording()
    return Coalesced(cast(asyncio.Transport, inner), asyncio.get_running_loop()), inner


async def test_the_writes_of_one_turn_go_out_as_one_at_its_end() -> None:
    t, inner = coalesced()
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    t.write(b"body")
    assert inner.calls == []
    assert t.get_write_buffer_size() == 7 + 23  # what is held counts
    await asyncio.sleep(0)
    assert inner.calls == [("write", b"HTTP/1.1 200 OK\r\n\r\nbody")]
    t.write(b"next")  # a later turn: a write of its own
    await asyncio.sleep(0)
    assert inner.calls[-1] == ("write", b"next")


async def test_a_large_body_goes_as_it_is_not_copied_into_one_with_its_head() -> None:
    t, inner = coalesced()
    body = b"x" * (JOIN_MAX + 1)
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    t.write(body)
    await asyncio.sleep(0)
    [(call, sent)] = inner.calls
    assert call == "writelines"
    assert sent[0] == b"HTTP/1.1 200 OK\r\n\r\n"
    assert sent[1] is body  # the bytes every answer of that story shares


async def test_close_and_half_close_send_what_is_held_first() -> None:
    t, inner = coalesced()
    t.write(b"last")
    t.write_eof()
    t.close()
    await asyncio.sleep(0)
    assert inner.calls == [("write", b"last"), ("write_eof", None), ("close", None)]


async def test_an_abort_drops_what_is_held_and_a_closed_transport_gets_nothing() -> None:
    t, inner = coalesced()
    t.write(b"lost")
    t.abort()
    await asyncio.sleep(0)
    assert inner.calls == [("abort", None)]
    t, inner = coalesced()
    t.write(b"too late")
    inner.closing = True  # the connection was lost meanwhile
    await asyncio.sleep(0)
    assert inner.calls == []


async def test_the_rest_is_the_transports_own() -> None:
    t, _ = coalesced()
    assert t.get_extra_info("peername") == "info:peername"
