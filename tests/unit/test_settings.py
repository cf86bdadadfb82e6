"""Settings from the environment: the replicas an append waits for, where the read
models live, how often live streams wake."""

from __future__ import annotations

import pytest

from dateline.projector.commit import WARM_PARTS, warm_parts
from dateline.store.config import Settings, SettingsError


def test_replicas_default_to_auto_and_a_second() -> None:
    cfg = Settings.from_env({})
    assert (cfg.min_replicas, cfg.replica_timeout_ms) == (-1, 1000)


def test_live_streams_wake_every_2_ms_at_most_unless_told() -> None:
    assert Settings.from_env({}).live_pace_ms == 2
    assert Settings.from_env({"DATELINE_LIVE_PACE_MS": "0"}).live_pace_ms == 0


def test_the_query_reads_the_lag_every_5_s_for_the_operations_page_unless_told() -> None:
    assert Settings.from_env({}).lag_trail_s == 5
    assert Settings.from_env({"DATELINE_LAG_TRAIL_S": "0"}).lag_trail_s == 0


def test_a_projector_keeps_64_mb_of_states_decoded_unless_told() -> None:
    assert warm_parts(Settings.from_env({}).projector_warm_mb) == WARM_PARTS
    cfg = Settings.from_env({"DATELINE_PROJECTOR_WARM_MB": "256"})
    assert warm_parts(cfg.projector_warm_mb) == 4 * WARM_PARTS


def test_a_projector_keeps_32_mb_of_states_packed_unless_told() -> None:
    assert Settings.from_env({}).projector_keep_mb == 32
    assert Settings.from_env({"DATELINE_PROJECTOR_KEEP_MB": "128"}).projector_keep_mb == 128


def test_a_number_of_replicas_and_a_timeout_are_taken() -> None:
    cfg = Settings.from_env({"DATELINE_MIN_REPLICAS": "2", "DATELINE_REPLICA_TIMEOUT_MS": "250"})
    assert (cfg.min_replicas, cfg.replica_timeout_ms) == (2, 250)
    assert Settings.from_env({"DATELINE_MIN_REPLICAS": "0"}).min_replicas == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATELINE_MIN_REPLICAS", "one"),
        ("DATELINE_MIN_REPLICAS", "17"),
        ("DATELINE_MIN_REPLICAS", "-1"),
        ("DATELINE_REPLICA_TIMEOUT_MS", "0"),
        ("DATELINE_REPLICA_TIMEOUT_MS", "1s"),
        ("DATELINE_VIEWS_URL", "localhost:6380"),
        ("DATELINE_VIEWS_URL", "same"),
        ("DATELINE_LIVE_PACE_MS", "1001"),
        ("DATELINE_LIVE_PACE_MS", "2ms"),
        ("DATELINE_PROJECTOR_WARM_MB", "0"),
        ("DATELINE_PROJECTOR_WARM_MB", "64MB"),
        ("DATELINE_PROJECTOR_KEEP_MB", "0"),
        ("DATELINE_PROJECTOR_KEEP_MB", "lots"),
        ("DATELINE_LAG_TRAIL_S", "301"),
        ("DATELINE_LAG_TRAIL_S", "5s"),
    ],
)
def test_a_bad_value_is_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{name}: expected"):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("env", "views_url", "own"),
    [
        ({}, None, True),  # the embedded server: a second one for the read models
        ({"REDIS_URL": "redis://db:6379"}, None, False),  # a server of yours: on it
        ({"DATELINE_VIEWS_URL": "log"}, None, False),  # embedded, and on it
        ({"DATELINE_VIEWS_URL": "redis://views:6379/0"}, "redis://views:6379/0", False),
        (
            {"REDIS_URL": "redis://db:6379", "DATELINE_VIEWS_URL": "unix:///run/views.sock"},
            "unix:///run/views.sock",
            False,
        ),
    ],
)
def test_where_the_read_models_live(env: dict[str, str], views_url: str | None, own: bool) -> None:
    cfg = Settings.from_env(env)
    assert (cfg.views_url, cfg.own_views) == (views_url, own)
