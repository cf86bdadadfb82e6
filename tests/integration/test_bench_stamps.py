"""The latency bench times a commit by when its doorbell message reached the observer's
socket, not by when the observer's loop came round to it (`bench/resp.py`): the
observer shares two cores with the load it sends and the events it reads."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from bench.resp import pack, stamped_replies

from dateline.store.connection import connect


async def test_a_message_read_late_is_stamped_when_it_reached_the_socket(redis_url: str) -> None:
    parts = urlsplit(redis_url)
    if parts.scheme != "redis" or parts.password:
        pytest.skip("the bench's reader speaks plain TCP without AUTH, to its own servers")
    client = connect(redis_url)
    replies = stamped_replies(redis_url, pack("SUBSCRIBE", "bench-stamps"))
    try:
        _, _, (kind, _, _) = await anext(replies)
        assert kind == b"subscribe"
        published = time.perf_counter()
        await client.publish("bench-stamps", "rang")
        time.sleep(0.2)  # noqa: ASYNC251  # this loop busy: the message waits in the socket
        arrived, read, (kind, _, data) = await anext(replies)
        assert (kind, data) == (b"message", b"rang")
        assert published <= arrived <= read - 0.15, (published, arrived, read)
    finally:
        await replies.aclose()
        await client.aclose()
