"""A raw RESP connection for the latency bench's load generator and commit observer.

The bench shares the machine's two cores with what it times. Through redis-py an
append cost this process about 0.17 ms of CPU and a pub/sub message 0.06 (pool,
retries, a task per call): as much again as the projector spends an update. Here a
command is a pre-packed write and a reply a hiredis parse.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import hiredis


class RespPipe:
    """Commands written as they come (pipelined), replies read in order. No AUTH: it
    talks to the bench's own loopback server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = hiredis.Reader()

    @classmethod
    async def open(cls, url: str) -> RespPipe:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 6379)
        return cls(reader, writer)

    def send(self, packed: bytes) -> None:
        self.writer.write(packed)

    async def replies(self) -> AsyncIterator[tuple[float, Any]]:
        """(when its bytes arrived, reply), in order; raises on an error reply."""
        while data := await self.reader.read(1 << 16):
            now = time.perf_counter()
            self.parser.feed(data)
            while (reply := self.parser.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise reply
                yield now, reply

    def close(self) -> None:
        self.writer.close()


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux's (`SO_TIMESTAMPNS_OLD`: a `struct timespec`); Python's `socket` does not name it."""


async def stamped_replies(url: str, first: bytes) -> AsyncGenerator[tuple[float, float, Any], None]:
    """Send `first` and yield (arrived, read, reply) for every reply after it: `arrived`
    when the kernel received the bytes that ended the reply (`SO_TIMESTAMPNS`), `read`
    when this process read them, both on `time.perf_counter`'s clock.

    This process sends the load and reads the dashboard's events too, on two shared
    cores: when it reads a reply is when its loop came round to it, which can be
    milliseconds after the server wrote it. The kernel's stamp is not: it is taken as the
    bytes reach the socket. For TCP it is that of the last segment a read took, so a
    reply read with later ones is stamped as late as the last (never early)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port or 6379))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.sendall(first)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(sock.fileno(), readable.set)
    parser = hiredis.Reader()
    try:
        while True:
            await readable.wait()
            readable.clear()
            try:
                data, ancillary, _, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(16))
            except BlockingIOError:
                continue
            if not data:
                return
            read = time.perf_counter()
            arrived = _kernel_time(ancillary, read)
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise reply
                yield arrived, read, reply
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()


def _kernel_time(ancillary: list[tuple[int, int, bytes]], read: float) -> float:
    """The receive stamp among `ancillary`, moved from the wall clock the kernel stamps
    with onto `perf_counter`'s; `read` if there is none."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return float(seconds + nanoseconds / 1e9) - (time.time() - time.perf_counter())
    return read


def pack(*words: str | bytes | int | float) -> bytes:
    # hiredis's stub types its argument as a tuple of one word, not of any number.
    return bytes(hiredis.pack_command(words))  # type: ignore[arg-type]
