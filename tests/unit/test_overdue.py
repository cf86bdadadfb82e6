"""Overdue: an item still to happen whose start has passed, by the clock given."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dateline.domain import project
from dateline.domain.overdue import due_at, is_overdue, next_due
from dateline.domain.state import When
from tests.factories import update
from tests.projection_helpers import as_logged
from tests.unit.test_projection import S

NOON = datetime(2020, 5, 30, 12, 0, tzinfo=UTC)


def announced(starts_at: str) -> dict[str, Any]:
    return update(
        "dateline.schedule.announced",
        time="2020-05-01T10:00:00Z",
        data={"item": "vote", "title": "The vote", "starts_at": starts_at},
    )


def then(type_: str, hour: int, **data: Any) -> dict[str, Any]:
    return update(
        f"dateline.schedule.{type_}",
        time=f"2020-05-30T{hour:02d}:00:00Z",
        data={"item": "vote", **data},
    )


def overdue(docs: list[dict[str, Any]], now: datetime) -> bool:
    return is_overdue(project(S, as_logged(docs)).schedule["vote"], now)


def test_an_item_whose_start_passed_with_no_report_is_overdue() -> None:
    docs = [announced("2020-05-30T10:00:00Z")]
    assert overdue(docs, NOON)
    assert not overdue(docs, datetime(2020, 5, 30, 9, 59, tzinfo=UTC))


@pytest.mark.parametrize(
    ("type_", "data"),
    [("started", {}), ("ended", {}), ("cancelled", {"reason": "Off"}), ("postponed", {})],
)
def test_a_report_after_the_announcement_ends_it(type_: str, data: dict[str, Any]) -> None:
    assert not overdue([announced("2020-05-30T10:00:00Z"), then(type_, 11, **data)], NOON)


def test_a_rescheduled_item_is_due_at_its_new_start() -> None:
    moved = then("rescheduled", 9, starts_at="2020-05-30T15:00:00Z")
    assert not overdue([announced("2020-05-30T10:00:00Z"), moved], NOON)
    assert overdue(
        [announced("2020-05-30T10:00:00Z"), moved], datetime(2020, 5, 30, 15, tzinfo=UTC)
    )


def test_a_reinstated_item_can_be_overdue_again() -> None:
    docs = [announced("2020-05-30T10:00:00Z"), then("postponed", 8), then("reinstated", 9)]
    assert overdue(docs, NOON)


def test_a_start_known_to_the_day_is_overdue_once_that_day_has_ended_everywhere() -> None:
    docs = [announced("2020-05-30")]
    assert not overdue(docs, datetime(2020, 5, 31, 11, 59, tzinfo=UTC))  # still the 30th at UTC-12
    assert overdue(docs, datetime(2020, 5, 31, 12, 0, tzinfo=UTC))


def test_a_start_known_to_the_month_is_overdue_once_that_month_has_ended_everywhere() -> None:
    assert due_at(When("2020-05", "month")) == datetime(2020, 6, 1, 12, tzinfo=UTC)
    assert due_at(When("2020-12", "month")) == datetime(2021, 1, 1, 12, tzinfo=UTC)


def test_an_item_with_no_known_start_is_never_overdue() -> None:
    # News of an item before its announcement: a placeholder with no start.
    assert not overdue([then("relocated", 9, location="Hall B")], datetime(2030, 1, 1, tzinfo=UTC))


def test_next_due_is_when_the_next_item_falls_overdue() -> None:
    state = project(
        S,
        as_logged(
            [
                announced("2020-05-30T14:00:00Z"),
                {
                    **announced("2020-05-30T13:00:00Z"),
                    "data": {"item": "b", "title": "B", "starts_at": "2020-05-30T13:00:00Z"},
                },
                {
                    **announced("2020-05-30T11:00:00Z"),
                    "data": {"item": "c", "title": "C", "starts_at": "2020-05-30T11:00:00Z"},
                },
            ]
        ),
    )
    items = state.schedule.values()
    assert next_due(items, NOON) == datetime(2020, 5, 30, 13, 0, tzinfo=UTC)  # c is overdue
    assert next_due(items, datetime(2020, 5, 30, 15, tzinfo=UTC)) is None  # all are now
