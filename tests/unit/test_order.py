"""How updates of a story are ordered (`domain/order.py`)."""

from __future__ import annotations

import pytest

from dateline.domain.order import order_key, sort_instant
from dateline_schemas import decode_update
from tests.factories import encode, update

PRECISIONS = ["month", "day", "approximate", "minute", "exact"]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("time", ["2019-02-28T23:59:00+07:00", "2019-02-01T00:30:00-05:00"])
def test_the_order_key_sorts_at_the_instant_sort_instant_gives(precision: str, time: str) -> None:
    """`order_key` finds the instant of most precisions itself, without the call: it
    must be the one `sort_instant` gives, for every precision."""
    doc = update("dateline.story.concluded", data={}, time=time, timeprecision=precision)
    u = decode_update(encode(doc)).update
    assert order_key(u)[0] == sort_instant(u)


def test_a_day_sorts_before_every_known_time_of_that_day() -> None:
    def key(time: str, precision: str) -> tuple[object, ...]:
        doc = update("dateline.story.concluded", data={}, time=time, timeprecision=precision)
        return order_key(decode_update(encode(doc)).update)

    day = key("2022-05-28T23:59:00+02:00", "day")
    assert day < key("2022-05-28T00:01:00+02:00", "exact")
    assert day < key("2022-05-28T00:00:00+02:00", "approximate")
