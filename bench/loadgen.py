"""A keep-alive HTTP/1.1 load generator over raw asyncio streams.

It costs the benchmark little (no client library between the measurement and the
socket), so what is measured is the server. Requests are spread over N persistent
connections, one request in flight on each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def wire(self) -> bytes:
        head = [f"{self.method} {self.path} HTTP/1.1", "Host: bench"]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        if self.body or self.method != "GET":
            head.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + self.body


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    seconds: float


async def send_all(base: str, requests: list[Request], connections: int) -> list[Answer]:
    """Every request, in order of the list per connection; answers in request order."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    answers: list[Answer | None] = [None] * len(requests)
    todo = iter(enumerate(requests))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for i, request in todo:
                start = time.perf_counter()
                writer.write(request.wire())
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in lines
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                answers[i] = Answer(int(lines[0].split()[1]), body, time.perf_counter() - start)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return [a for a in answers if a is not None]


async def stream_events(
    base: str, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[float, bytes, bytes]]:
    """(when it arrived, event name, data) for each Server-Sent Event of a GET.

    For the latency observer: it shares the two cores with what it times, so it reads
    the chunked body off the socket and splits events on the blank line, no more (our
    events carry one `data` line each). Events are stamped when their chunk arrived.
    """
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            Request("GET", path, {"Accept": "text/event-stream", **(headers or {})}).wire()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
            raise RuntimeError(f"GET {path}: not a chunked event stream: {head!r}")
        pending = b""
        while size := int((await reader.readline()).split(b";")[0], 16):
            chunk = await reader.readexactly(size + 2)  # the chunk and its CRLF
            now = time.perf_counter()
            *whole, pending = (pending + chunk[:-2]).split(b"\r\n\r\n")
            for event in whole:
                name, data = b"message", b""
                for line in event.split(b"\r\n"):
                    field, _, value = line.partition(b": ")
                    if field == b"event":
                        name = value
                    elif field == b"data":
                        data = value
                yield now, name, data
    finally:
        writer.close()
