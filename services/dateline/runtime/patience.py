"""Waiting for a Redis that cannot be reached yet: a process started during an outage,
a restart or a cluster's failover waits for its server, one log line a try, rather
than exit. (Exited, it waited on its supervisor's backoff instead, which grows while
the process keeps dying young: up to 30 s under `dateline up`, minutes under an
orchestrator, after the server was back.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import structlog
from redis.exceptions import AuthenticationError

from dateline.store.connection import UNREACHABLE, cluster_mode, described

log = structlog.get_logger("dateline.runtime.patience")
T = TypeVar("T")
FIRST_S, LAST_S = 0.2, 5.0
"""The pause after the first failed try, doubled after each until this."""


async def patiently(step: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt()`, again while the log's server cannot be reached, waiting longer each
    time. A credential the server refuses is no outage: it is raised at once."""

    def say(exc: Exception, delay: float) -> None:
        log.warning(
            "the log's server cannot be reached; trying again",
            step=step,
            error=described(exc),
            retry_in_s=delay,
        )

    done = await _retried(attempt, say, None)
    assert done is not None  # noqa: S101 - with no `stop`, only a success ends it
    return done[0]


async def reachable(url: str, what: str, stop: asyncio.Event | None = None) -> bool:
    """Once Redis at `url` answers, True; False if `stop` is set first. `what` names
    the server in the log line of each failed try ("the log's server", ...)."""

    def say(exc: Exception, delay: float) -> None:
        log.warning(
            f"{what} cannot be reached; waiting for it",
            server=where(url),
            error=described(exc),
            retry_in_s=delay,
        )

    return await _retried(lambda: cluster_mode(url), say, stop) is not None


async def _retried(
    attempt: Callable[[], Awaitable[T]],
    say: Callable[[Exception, float], None],
    stop: asyncio.Event | None,
) -> tuple[T] | None:
    """`attempt()`'s result (in a tuple: it may be None), tried again after each
    failure that is an outage (`say` told of it), 0.2 s then twice as long, 5 s at most;
    None if `stop` was set first."""
    delay = FIRST_S
    while stop is None or not stop.is_set():
        try:
            return (await attempt(),)
        except UNREACHABLE as exc:
            if isinstance(exc, AuthenticationError):  # a ConnectionError, to redis-py
                raise
            say(exc, delay)
        if stop is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
        delay = min(LAST_S, delay * 2)
    return None


def where(url: str) -> str:
    """`url`'s host and port (a Unix socket's path), never its password."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname or '?'}:{parts.port or 6379}"
    except ValueError:  # a port that is no number: the settings say so elsewhere
        return "REDIS_URL"
