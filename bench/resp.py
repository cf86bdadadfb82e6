"""A raw RESP connection for the latency bench's load generator and commit observer.

The bench shares the machine's two cores with what it times. Through redis-py an
append cost this process about 0.17 ms of CPU and a pub/sub message 0.06 (pool,
retries, a task per call): as much again as the projector spends an update. Here a
command is a pre-packed write and a reply a hiredis parse.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
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


def pack(*words: str | bytes | int | float) -> bytes:
    # hiredis's stub types its argument as a tuple of one word, not of any number.
    return bytes(hiredis.pack_command(words))  # type: ignore[arg-type]
