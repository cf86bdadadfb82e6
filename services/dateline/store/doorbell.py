"""The doorbell: rung by the projector at each commit, heard by every reader that waits.

The channel is a doorbell, not a feed: readers re-read the checkpoints when it rings
(and every `poll_s` without it), so a missed message delays a push but loses nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis
import structlog

from dateline.store.layout import changes_channel

log = structlog.get_logger("dateline.doorbell")
SWITCH = b"switch"
"""What `dateline replay` publishes when it switches the active version."""
READERS = b"readers"
"""What `dateline readers revoke` publishes: grants a process keeps are to be checked anew."""


class Doorbell:
    """Rings when the projector commits (pub/sub), and at least every `poll_s` without it.

    Take `current()` before reading, then `wait()` on it: a commit that lands between
    the read and the wait still wakes the reader.
    """

    def __init__(self, client: aioredis.Redis, prefix: str, poll_s: float = 1.0) -> None:
        self.client, self.channel, self.poll_s = client, changes_channel(prefix), poll_s
        self._event = asyncio.Event()
        self.switched = False
        self.listeners: list[Callable[[bytes | None, bool], None]] = []
        """Told each message (bytes, True), the subscription made (None, True) and lost
        (None, False): what a listener keeps is good only while it hears them all."""

    def current(self) -> asyncio.Event:
        return self._event

    def ring(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, bell: asyncio.Event, seconds: float) -> bool:
        """True if it rang within `seconds`.

        `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11 wait_for loses a
        cancellation that lands as the bell rings (python/cpython#86296), and a live
        stream whose client had gone carried on (see `store/connection.py`).
        """
        try:
            async with asyncio.timeout(seconds):
                await bell.wait()
        except TimeoutError:
            return False
        return True

    def _tell(self, message: bytes | None, *, live: bool) -> None:
        for listener in self.listeners:
            listener(message, live)

    async def run(self) -> None:
        """Listen until cancelled; reconnects after errors, ringing on a timer meanwhile."""
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    while True:
                        msg = await pubsub.get_message(timeout=self.poll_s)
                        if msg is not None and msg.get("type") == "subscribe":
                            self._tell(None, live=True)  # heard from here on, not before
                        elif msg is not None:
                            data = msg.get("data")
                            if data == SWITCH:
                                self.switched = True
                            self._tell(data if isinstance(data, bytes) else None, live=True)
                        self.ring()
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                self._tell(None, live=False)
                log.warning(
                    "doorbell lost its subscription; polling until it is back", error=str(exc)
                )
                self.switched = True
                self.ring()
                await asyncio.sleep(self.poll_s)
            except BaseException:  # cancelled, or a fault: no one hears for the listeners
                self._tell(None, live=False)
                raise
