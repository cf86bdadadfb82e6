"""uvicorn as the HTTP services run it: limits on a request's head before any app code.

uvicorn's httptools protocol keeps every header a client sends: one request with a
million headers took a process from 127 MB to 1 GB, before authentication or any
route ran. Here a request's head is bounded in count (`MAX_HEADERS`) and bytes
(`MAX_HEAD_BYTES`), answered `431` past them, and must arrive within
`HEAD_TIMEOUT_S` of the connection opening or of the request starting (a client
trickling its headers in holds a connection, never for long).

A response goes out in one write (`Coalesced`): uvicorn writes its head and its body
apart, two `send()` system calls where one does.

A client that stops taking what it is sent is dropped here too: when the socket's
write buffer is full (the transport pauses writing), a timer starts; if the client
took fewer than `SLOW_CLIENT_BYTES` in `slow_client_s`, the connection is aborted, and
the request writing to it (an answer, a live stream's pages) ends and gives its place
up; if it took more, another window starts. A client that must drain the whole buffer
in one window would be dropped for reading a large answer over a slow link. Timed in
the protocol, the watch costs nothing while writes go through: as a deadline on each
of the app's sends, it was 9% of the query process's CPU on a cached story read.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any, cast

import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dateline.web.limits import SLOW_CLIENT_BYTES, SLOW_CLIENT_S

if sys.platform != "win32":
    import fcntl
    import termios

log = structlog.get_logger("dateline.web.server")
MAX_HEADERS = 100
MAX_HEAD_BYTES = 32 * 1024
HEAD_TIMEOUT_S = 10.0
LINGER_S = 2.0
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/problem+json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
)
_BODY = (
    b'{"type":"urn:dateline:problem:head-too-large","title":"Request head too large",'
    b'"status":431,"detail":"at most %d headers and %d bytes of them"}'
)


class _Refused(Exception):
    pass


JOIN_MAX = 65_536
"""The most bytes a turn's writes are joined into one: past it they go as they are
(`writelines`, which uvloop sends without copying). A story's answer is one bytes object
for every request that reads it alike (`query/cache.py`); joined to each answer's head,
it was a copy an answer: 64 answers in flight of a story of 5.4 MB, 346 MB of copies."""


class Coalesced:
    """A transport whose writes of one turn of the event loop go out as one, at the end
    of the turn. uvicorn writes a response's head, then its body: two system calls, a
    fifth of the query process's CPU on a cached story read. Closing, a half-close and
    the write buffer's size count what is held; an abort drops it, as the transport
    drops what it had not sent."""

    __slots__ = ("_held", "_loop", "_sent", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: list[bytes] = []
        self._sent = 0

    def taken(self) -> int:
        """Bytes the client has taken so far: what was handed on, less what this process
        and the kernel still hold for it. The transport's buffer alone moves in steps of
        up to half the kernel's send buffer (4 MB on Linux): a client reading 1 MB a
        second showed none taken in some windows of 0.3 s."""
        return self._sent - self._transport.get_write_buffer_size() - _unsent(self._transport)

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(data)

    def _flush(self) -> None:
        if not self._held:
            return
        held, self._held = self._held, []
        if self._transport.is_closing():
            return
        self._sent += sum(map(len, held))
        if len(held) == 1:
            self._transport.write(held[0])
        elif sum(map(len, held)) <= JOIN_MAX:
            self._transport.write(b"".join(held))
        else:  # each as it is: a large body is shared by every answer that carries it
            self._transport.writelines(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def __getattr__(self, name: str) -> Any:  # the rest is the transport's own
        return getattr(self._transport, name)


def _unsent(transport: asyncio.Transport) -> int:
    """The bytes in the socket's send queue, not yet acknowledged by the client (none
    known on Windows, whose sockets have no such ioctl)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sys.platform == "win32":
        return 0
    try:
        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(4))
    except OSError:  # closed meanwhile, or not a TCP socket: nothing held there
        return 0
    return int.from_bytes(queued, sys.byteorder, signed=True)


class LimitedHttpTools(HttpToolsProtocol):
    """httptools, with a bounded request head and a deadline to send it, and a deadline
    for the client to take what it is sent."""

    slow_client_s = SLOW_CLIENT_S
    slow_client_bytes = SLOW_CLIENT_BYTES

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, Coalesced(transport, self.loop)))
        self._count = self._bytes = 0
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None
        self._stalled: asyncio.TimerHandle | None = None
        self._mark = 0
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unstall()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled is None:
            self._watch()

    def _watch(self) -> None:
        self._mark = cast(Coalesced, self.transport).taken()
        self._stalled = self.loop.call_later(self.slow_client_s, self._check_reading)

    def resume_writing(self) -> None:
        self._unstall()
        super().resume_writing()

    def _unstall(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def _check_reading(self) -> None:
        took = cast(Coalesced, self.transport).taken() - self._mark
        if took >= self.slow_client_bytes:  # slow, but reading: another window
            self._watch()
            return
        self._stalled = None
        log.warning(
            "client stopped reading; connection closed",
            client=_peer(self),
            after_s=self.slow_client_s,
            took_bytes=took,
        )
        self.transport.abort()  # close() would wait for the buffer to drain: never

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._count = self._bytes = 0
        self._arm()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count += 1
        self._bytes += len(name) + len(value)
        if self._count > MAX_HEADERS or self._bytes > MAX_HEAD_BYTES:
            self._refuse()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(HEAD_TIMEOUT_S, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        log.warning("request head not sent in time; connection closed", client=_peer(self))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self._refused:  # after a refusal, what the client still sends is drained
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # the parser stopped on our refusal: the 431 is out already
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._refused = True
        body = _BODY % (MAX_HEADERS, MAX_HEAD_BYTES)
        self.transport.write(_TOO_LARGE % len(body) + body)
        # Closed at once with the client's headers unread, the socket would reset and the
        # client lose the 431: half-close, drain a while, then close.
        self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)
        log.warning(
            "request head too large; refused",
            client=_peer(self),
            headers=self._count,
            bytes=self._bytes,
        )
        raise _Refused  # stops the parser: nothing of this request goes further


def _peer(protocol: HttpToolsProtocol) -> str | None:
    client = protocol.client
    return f"{client[0]}:{client[1]}" if client else None


def config(
    app: Any,
    *,
    slow_client_s: float = SLOW_CLIENT_S,
    slow_client_bytes: int = SLOW_CLIENT_BYTES,
    **kw: Any,
) -> uvicorn.Config:
    """The uvicorn configuration of every HTTP service (and of the tests that serve one)."""

    class Protocol(LimitedHttpTools):
        pass

    Protocol.slow_client_s = slow_client_s
    Protocol.slow_client_bytes = slow_client_bytes
    return uvicorn.Config(app, http=Protocol, log_level="warning", access_log=False, **kw)


def serve(served: uvicorn.Config) -> None:
    """Serve until SIGINT or SIGTERM, shut down gracefully, and return (the command exits 0).

    uvicorn raises the signal that stopped it again once it has shut down, for the
    caller's own handler: with none, a clean stop ended the process by the signal (exit
    -15, "Exited (143)" under Docker), and a Ctrl-C in click's "Aborted!" (exit 1).
    Handlers that do nothing take that second signal; uvicorn's own handle the first.
    """
    stops = (signal.SIGINT, signal.SIGTERM)
    before = {sig: signal.signal(sig, _stopped) for sig in stops}
    try:
        uvicorn.Server(served).run()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _stopped(_sig: int, _frame: object) -> None:
    """The signal uvicorn raises again after its shutdown: it has been handled."""
