"""Where the projection stands: the full report, and the cheap gauges /metrics reads."""

from __future__ import annotations

from typing import Any

import pytest

from dateline.runtime import status
from dateline.store.log import Log
from tests.factories import encode, update
from tests.integration.test_projector import projector, settle


async def test_the_gauges_agree_with_the_report_before_and_after_the_projector(
    log: Log, redis_url: str
) -> None:
    """With updates waiting, both count them (the gauges where the server counts a
    group's undelivered entries: Valkey, Redis 7+); once projected, both say none."""
    app = await projector(log, redis_url)
    try:
        await settle(app)  # the group exists, nothing to do yet
        await log.append([encode(update(subject=f"s{i}")) for i in range(12)])
        report = await status.report(log.redis, log.keys, app.models)
        found = await status.gauges(log.redis, log.keys, app.models)
        assert sum(r.lag for r in report.partitions) == 12
        # The operations page's trail tells it as the report does, without the rest.
        point = await status.lag_point(log.redis, log.keys, app.models)
        assert (point.lag, point.exact) == (12, all(r.lag_exact for r in report.partitions))
        assert point.partitions == [(r.checkpoint, r.lag) for r in report.partitions]
        assert point.appended == sum(r.length for r in report.partitions)
        lags = [g.lag for g in found.partitions]
        if None in lags:  # Redis 6.2: no count of a group's undelivered entries
            assert (await log.redis.info("server"))["redis_version"].startswith("6.")
        else:
            assert lags == [r.lag for r in report.partitions]
        await settle(app)
        report = await status.report(log.redis, log.keys, app.models)
        found = await status.gauges(log.redis, log.keys, app.models)
        assert [r.lag for r in report.partitions] == [0] * log.keys.partitions
        assert [g.lag for g in found.partitions] == [0] * log.keys.partitions
        assert [g.lag_seconds for g in found.partitions] == [0.0] * log.keys.partitions
        assert found.parked_updates == report.dead_letters.parked_updates == 0
        assert report.projection.active is None or report.projection.active == "v1"
        assert report.group == app.models.group
    finally:
        await app.client.aclose()


async def test_the_report_counts_a_lag_past_its_scan_and_not_what_was_applied_unacknowledged(
    log: Log, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lag is the group's count where the server keeps one, whatever its size, plus
    the pending entries past the checkpoint (delivered, not applied); a pending entry at
    or before it was applied, its `XACK` not yet sent, and is not behind. Where the
    server keeps no count (Redis 6.2), the entries read, up to `LAG_SCAN`, say so."""
    monkeypatch.setattr(status, "LAG_SCAN", 5)
    app = await projector(log, redis_url)
    try:
        await settle(app)
        await log.append([encode(update(subject="one-story", id=f"e{i}")) for i in range(12)])
        stream = log.keys.log(log.keys.partition("one-story"))
        part = log.keys.partition("one-story")
        counted = (await log.redis.info("server"))["redis_version"] >= "7"

        def row(report: status.Status) -> status.PartitionStatus:
            return report.partitions[part]

        report = await status.report(log.redis, log.keys, app.models)
        assert (row(report).lag, row(report).lag_exact) == ((12, True) if counted else (5, False))
        assert all(r.lag == 0 and r.lag_exact for i, r in enumerate(report.partitions) if i != part)

        # Seven delivered to a consumer and not applied: still behind, now pending.
        got: Any = await log.redis.xreadgroup(app.models.group, "stray", {stream: ">"}, count=7)
        ids = [e[0].decode() for e in got[0][1]]
        report = await status.report(log.redis, log.keys, app.models)
        assert row(report).pending == 7
        assert (row(report).lag, row(report).lag_exact) == ((12, True) if counted else (5, False))

        # Four of them applied (the checkpoint past them), their XACK not sent yet.
        region = app.models.region(part).checkpoint
        await log.redis.hset(region, str(part), ids[3])
        report = await status.report(log.redis, log.keys, app.models)
        assert row(report).checkpoint == ids[3]
        assert (row(report).lag, row(report).lag_exact) == ((8, True) if counted else (5, False))
        # /metrics' gauge counts as the report does (it counted every pending entry: 12).
        found = await status.gauges(log.redis, log.keys, app.models)
        assert found.partitions[part].lag == (8 if counted else None)
        assert found.partitions[part].pending == 7
        # More applied and unacknowledged than a read counts: the lag is read instead.
        monkeypatch.setattr(status, "APPLIED_SCAN", 4)
        report = await status.report(log.redis, log.keys, app.models)
        assert (row(report).lag, row(report).lag_exact) == (5, False)
        found = await status.gauges(log.redis, log.keys, app.models)
        assert found.partitions[part].lag is None
    finally:
        await app.client.aclose()


async def test_a_group_whose_count_the_server_lost_or_that_lags_its_checkpoint_is_read(
    log: Log, redis_url: str
) -> None:
    """A group's last id set by hand (`XGROUP SETID`): to the middle of the stream, the
    server no longer counts its undelivered entries; to the first entry, it counts them
    from there, behind the checkpoint, so its count holds entries already applied. Both
    times the report reads the entries past the checkpoint."""
    app = await projector(log, redis_url)
    try:
        await settle(app)
        await log.append([encode(update(subject="one-story", id=f"e{i}")) for i in range(6)])
        await settle(app)
        part = log.keys.partition("one-story")
        stream = log.keys.log(part)
        entries: Any = await log.redis.xrange(stream)
        ids = [e[0].decode() for e in entries]
        assert len(ids) == 6
        counted = (await log.redis.info("server"))["redis_version"] >= "7"
        checkpoint = app.models.region(part).checkpoint
        for group_at, lost in ((ids[3], True), (ids[0], False)):
            await log.redis.xgroup_setid(stream, app.models.group, group_at)
            await log.redis.hset(checkpoint, str(part), ids[3])
            if counted:  # the case is the one named
                info = await log.redis.xinfo_groups(stream)
                assert (info[0]["lag"] is None) is lost
            report = await status.report(log.redis, log.keys, app.models)
            assert (report.partitions[part].lag, report.partitions[part].lag_exact) == (2, True)
    finally:
        await app.client.aclose()
