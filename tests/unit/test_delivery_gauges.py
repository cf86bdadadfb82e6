"""The subscriptions' gauges the query service sets at each scrape (`record_deliveries`):
each subscription's series, and none left of one removed since."""

from __future__ import annotations

from prometheus_client import REGISTRY

from dateline.runtime.status import DeliveryStatus, SubscriptionStatus, record_deliveries

PER_SUBSCRIPTION = (
    "dateline_delivery_backlog_updates",
    "dateline_delivery_lag_seconds",
    "dateline_delivery_parked_updates",
    "dateline_delivery_missed_updates",
)


def subscription(name: str, **counts: float) -> SubscriptionStatus:
    return SubscriptionStatus(
        name=name,
        url=f"https://{name}.example/hook",
        mode="updates",
        story_prefixes=[],
        types=[],
        paused=False,
        backlog=int(counts.get("backlog", 0)),
        lag_seconds=counts.get("lag", 0.0),
        retrying=0,
        parked=int(counts.get("parked", 0)),
        delivered=0,
        failed_attempts=0,
        last_status=None,
        last_error=None,
        last_delivered=None,
        last_failed=None,
        held=int(counts.get("held", 0)),
    )


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_each_subscription_has_its_series_and_a_removed_one_none() -> None:
    record_deliveries(
        DeliveryStatus(
            0,
            [
                subscription("gauges-cms", backlog=3, lag=400.0, parked=2, held=1),
                subscription("gauges-chat"),
            ],
            fanout_parked=4,
        )
    )
    assert [value(n, subscription="gauges-cms") for n in PER_SUBSCRIPTION] == [3, 400, 2, 1]
    assert [value(n, subscription="gauges-chat") for n in PER_SUBSCRIPTION] == [0, 0, 0, 0]
    assert value("dateline_fanout_parked_updates") == 4

    record_deliveries(DeliveryStatus(0, [subscription("gauges-chat", backlog=1)]))
    # Its last lag would have kept DatelineDeliveryBehind firing for a subscription gone.
    assert [value(n, subscription="gauges-cms") for n in PER_SUBSCRIPTION] == [None] * 4
    assert value("dateline_delivery_backlog_updates", subscription="gauges-chat") == 1
    assert value("dateline_fanout_parked_updates") == 0
