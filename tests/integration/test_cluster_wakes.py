"""A runner on a real cluster (3 masters, a replica each) waits for its partitions'
rings (`runtime/wakes.py`), not a poll: an update appended while it waits wakes it,
and it reads that partition alone; a partition whose waiter fails is polled as
before, and rings again once its waiter is back; a runner let go stops its waiters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.exceptions import NoPermissionError
from structlog.testing import capture_logs

from dateline.projector.app import Projector
from dateline.runtime import groups
from dateline.runtime import runner as runner_module
from dateline.runtime.runner import POLL_S
from dateline.runtime.wakes import Wakes
from dateline.store.log import Log
from tests.factories import encode, update
from tests.integration.test_cluster_projector import one_a_partition, projector
from tests.integration.test_projector import settle, stored_state


@pytest.fixture
def log(cluster_log: Log) -> Log:
    return cluster_log


def spy_reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The streams each of the runner's group reads names, in turn."""
    seen: list[list[str]] = []
    real = groups.read_and_get

    async def spied(*args: Any, **kwargs: Any) -> Any:
        seen.append(sorted(s for streams, _ in args[3] for s in streams))
        return await real(*args, **kwargs)

    monkeypatch.setattr(groups, "read_and_get", spied)
    return seen


def spy_waits(wakes: Wakes, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """How long each of the runner's waits for a ring may last, in turn."""
    seen: list[float] = []
    real = wakes.wait

    async def spied(within: float) -> set[str]:
        seen.append(within)
        return await real(within)

    monkeypatch.setattr(wakes, "wait", spied)
    return seen


async def watched(app: Projector) -> Wakes:
    """The runner's waiters, once each of its partitions has one watching."""
    wakes = app.runner.wakes
    assert wakes is not None, "a runner on a cluster has waiters"
    streams = [p.stream for p in app.runner.owned.values()]
    deadline = time.monotonic() + 10
    while wakes.unwatched(streams) and time.monotonic() < deadline:
        await app.runner.step()
    assert not wakes.unwatched(streams), "every partition watched"
    return wakes


async def test_a_ring_wakes_a_waiting_runner_which_reads_that_partition_alone(
    local_cluster: Any, log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    stories = one_a_partition(log)[:3]
    app = await projector(log, local_cluster.url)
    reads = spy_reads(monkeypatch)
    try:
        await settle(app)  # leases taken, groups made, waiters started
        wakes = await watched(app)
        rings = wakes.rings
        for story in stories:
            await settle(app)
            with monkeypatch.context() as patched:  # a pause no test outlasts: a ring ends it
                patched.setattr(runner_module, "RING_S", (3600.0, 3600.0))
                app.runner._pause = 3600.0
                step = asyncio.create_task(app.runner.step())
                await asyncio.sleep(0.3)
                assert not step.done(), "waiting, not polling"
                reads.clear()
                await log.append([encode(update(subject=story, id=f"{story}-0"))])
                assert await asyncio.wait_for(step, 10) == 1
            assert reads == [[log.keys.log(log.keys.partition(story))]]
            assert (await stored_state(app, story)).version == 1
        assert wakes.rings >= rings + len(stories)
    finally:
        await app.runner.release_all()
        await app.client.aclose()


async def test_a_partition_whose_waiter_fails_is_polled_until_it_is_back(
    local_cluster: Any, log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    story = one_a_partition(log)[0]
    app = await projector(log, local_cluster.url)
    try:
        await settle(app)
        wakes = await watched(app)
        streams = [p.stream for p in app.runner.owned.values()]
        before = polled(wakes)  # the process's: other runners of this group count too

        async def refused(*_: Any, **__: Any) -> Any:
            raise NoPermissionError("this user has no permissions to run the 'xread' command")

        monkeypatch.setattr(wakes.client, "xread", refused)
        with capture_logs() as logs:
            wakes.follow(())  # the waiters blocked now end; those started next fail
            await app.runner.step()
            await asyncio.sleep(0.1)
            assert wakes.unwatched(streams) == set(streams)
            assert polled(wakes) == before + len(streams), "an SRE's gauge counts them"
            await settle(app)
            app.runner._pause = 3600.0
            waits = spy_waits(wakes, monkeypatch)
            await log.append([encode(update(subject=story, id=f"{story}-0"))])
            assert await asyncio.wait_for(app.runner.step(), 10) == 1  # polled: no ring
            assert waits == [POLL_S[1]], "a pause no longer than a poll's"
        assert (await stored_state(app, story)).version == 1
        failed = [e for e in logs if e["event"].startswith("partition waiter failed")]
        assert {e["stream"] for e in failed} == set(streams), "once a partition"
        assert all("+xread" in e["hint"] for e in failed)

        monkeypatch.undo()
        with capture_logs() as logs:
            await watched(app)
            deadline = time.monotonic() + 10  # "back" once a wait of its ends, at most 2 s
            while len(_back(logs)) < len(streams) and time.monotonic() < deadline:
                await app.runner.step()
        assert _back(logs) == set(streams)
        assert polled(wakes) == before
    finally:
        await app.runner.release_all()
        await app.client.aclose()


def polled(wakes: Wakes) -> float:
    """`dateline_partitions_polled` of the runner's group, as `/metrics` shows it."""
    return REGISTRY.get_sample_value("dateline_partitions_polled", {"group": wakes.group}) or 0.0


def _back(logs: list[MutableMapping[str, Any]]) -> set[str]:
    return {e["stream"] for e in logs if e["event"] == "partition waiter back; rings again"}


async def test_a_runner_let_go_stops_its_waiters(local_cluster: Any, log: Log) -> None:
    app = await projector(log, local_cluster.url)
    try:
        await settle(app)
        wakes = await watched(app)
        tasks = list(wakes._tasks.values())
        streams = [p.stream for p in app.runner.owned.values()]
        assert len(tasks) == len(streams) == log.keys.partitions
        await app.runner.release_all()
        assert all(t.done() for t in tasks)
        assert wakes.unwatched(streams) == set(streams)
        assert not wakes._tasks
    finally:
        await app.client.aclose()
