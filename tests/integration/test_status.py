"""Where the projection stands: the full report, and the cheap gauges /metrics reads."""

from __future__ import annotations

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
