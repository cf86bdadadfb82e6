"""A TCP proxy of our own between the services and the server, that misbehaves on cue:
latency, every connection reset, one direction cut."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class Proxy:
    upstream_port: int
    port: int = 0
    latency_s: float = 0.0
    """Added before each chunk is passed on, both ways."""
    cut_replies: bool = False
    """Server-to-client bytes are held back (one direction cut): requests reach the
    server, replies never come, until the cut ends and those connections are reset."""
    _server: asyncio.Server | None = None
    _pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.reset()
            # Each connection's task ends once its sockets are gone; none is left to be
            # cancelled when the loop closes.
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def reset(self) -> None:
        """Close every connection now, both sides: what a network reset looks like."""
        for client, server in list(self._pairs):
            for writer in (client, server):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
        self._pairs.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, replies=False),
                self._pipe(up_reader, writer, replies=True),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._pairs.discard(pair)
            for w in pair:
                w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                writer.transport.abort()
                return
            while replies and self.cut_replies:  # noqa: ASYNC110 - the harness flips it
                await asyncio.sleep(0.01)
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            writer.write(data)
            await writer.drain()
