"""Settings from the environment: the replicas an append waits for."""

from __future__ import annotations

import pytest

from dateline.store.config import Settings, SettingsError


def test_replicas_default_to_auto_and_a_second() -> None:
    cfg = Settings.from_env({})
    assert (cfg.min_replicas, cfg.replica_timeout_ms) == (-1, 1000)


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
    ],
)
def test_a_bad_value_is_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{name}: expected"):
        Settings.from_env({name: value})
