"""A keep-alive HTTP/1.1 load generator over raw asyncio streams.

It costs the benchmark little (no client library between the measurement and the
socket), so what is measured is the server. Requests are spread over N persistent
connections, one request in flight on each.
"""

from __future__ import annotations

import asyncio
import time
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
