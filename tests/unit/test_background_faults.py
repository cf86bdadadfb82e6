"""A background loop that meets an error it does not expect says so and goes on: each of
these ended, unsaid, on the first such error (until the process stopped, or never)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from redis.exceptions import ResponseError
from structlog.testing import capture_logs

from dateline import kit
from dateline.ingest import validator
from dateline.ingest.credentials import Credentials
from dateline.kit import DatelineLog


def failing(calls: list[int]) -> Any:
    async def fail(*args: Any) -> Any:
        calls.append(1)
        raise ResponseError("NOPERM this user has no permissions to run the 'xpending' command")

    return fail


async def run_for(seconds: float, work: Any) -> None:
    task = asyncio.create_task(work)
    await asyncio.sleep(seconds)
    assert not task.done(), task.exception() if task.done() else None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_kits_retry_loop_goes_on_past_a_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    log = DatelineLog("redis://unused", group="g", partitions=1, retry_s=0.001)
    calls: list[int] = []
    monkeypatch.setattr(log, "_find_stuck", failing(calls))
    monkeypatch.setattr(kit, "STUCK_AFTER_S", 0.0)

    async def none_asked() -> list[str]:
        return []

    log._dead = SimpleNamespace(redrives_asked=none_asked)  # type: ignore[assignment]
    with capture_logs() as logs:
        await run_for(0.05, log._retry_loop())
    assert len(calls) >= 2
    said = [e for e in logs if e["event"].startswith("looking for entries left pending failed")]
    assert said and said[0]["log_level"] == "error"


async def test_the_kits_lease_keeping_goes_on_past_a_fault() -> None:
    log = DatelineLog("redis://unused", group="g", partitions=1, lease_ttl_ms=3)
    calls: list[int] = []

    async def alive() -> int:
        return 1

    log._lease = SimpleNamespace(renew=failing(calls), acquire=failing(calls), heartbeat=alive)  # type: ignore[assignment]
    with capture_logs() as logs:
        await run_for(0.05, log._keep_lease())
    assert len(calls) >= 2 and not log.lost.is_set()
    said = [e for e in logs if e["event"].startswith("renewing the lease failed")]
    assert said and said[0]["log_level"] == "error"


async def test_following_new_feeds_goes_on_past_a_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(Credentials, "feeds", failing(calls))
    runner = SimpleNamespace(follow=lambda streams: [])
    stop = asyncio.Event()
    with capture_logs() as logs:
        following = validator.follow_feeds(runner, None, "t", stop, every_s=0.005)  # type: ignore[arg-type]
        await run_for(0.05, following)
    assert len(calls) >= 2
    said = [e for e in logs if e["event"].startswith("reading the feeds failed")]
    assert said and said[0]["log_level"] == "error"
