"""The acknowledgements and checkpoint moves a commit carries (`projector/commit.acks`)."""

from __future__ import annotations

import pytest

from dateline.projector import commit
from dateline.projector.commit import acks, named
from dateline.runtime import Delivery
from dateline.store.layout import Keys
from dateline.store.readmodels import ReadModels

MODELS = ReadModels(Keys("t", 8), "v1")


def bell(partition: int) -> tuple[str, str]:
    return "PUBLISH", "changes"


def delivery(partition: int, entry_id: str) -> Delivery:
    return Delivery(partition, f"t:log:{partition}", entry_id, "s", b"")


def advances(delivered: dict[int, str | None], acked: list[Delivery]) -> dict[int, str]:
    """Each partition's ADVANCE: the word it takes for how far the group delivered."""

    def runner_knows(partition: int) -> str | None:
        return delivered.get(partition)

    commands = acks(MODELS, "g", acked, bell, runner_knows)
    return {int(c[2]): str(c[-2]) for c in commands if c[0] == "ADVANCE"}


def test_each_partition_is_acknowledged_and_advanced_once() -> None:
    acked = [delivery(1, "5-0"), delivery(3, "7-0"), delivery(1, "6-0")]
    commands = acks(MODELS, "g", acked, bell, lambda p: None)
    assert [c[0] for c in commands] == ["XACK", "ADVANCE", "XACK", "ADVANCE"]
    assert commands[0] == ("XACK", "t:log:1", "g", "5-0", "6-0")


def test_an_advance_takes_the_last_entry_the_runner_was_delivered() -> None:
    acked = [delivery(1, "5-0"), delivery(1, "10-2"), delivery(2, "3-0")]
    assert advances({1: "12-0", 2: "3-0"}, acked) == {1: "12-0", 2: "3-0"}


def test_an_advance_asks_the_group_when_the_runner_cannot_say() -> None:
    assert advances({1: None}, [delivery(1, "5-0")]) == {1: ""}
    assert advances({}, [delivery(1, "5-0")]) == {1: ""}


def test_an_advance_names_the_stories_written_in_its_partition() -> None:
    acked = [delivery(1, "5-0"), delivery(2, "3-0"), delivery(3, "4-0")]
    names = {1: "a b", 2: "c"}
    commands = acks(MODELS, "g", acked, bell, lambda p: None, names)
    assert {int(c[2]): c[-1] for c in commands if c[0] == "ADVANCE"} == {1: "a b", 2: "c", 3: ""}


def test_stories_are_named_by_partition_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commit, "NAMED", 2)
    where = {"a": 1, "b": 1, "c": 2, "d": 3, "e": 3, "f": 3}
    assert named(where, where.__getitem__) == {1: "a b", 2: "c"}  # 3 wrote too many
