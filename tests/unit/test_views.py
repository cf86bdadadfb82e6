"""The public story view stays in step with the projection's state."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from dateline.domain.state import Item, StoryState, When
from dateline.query.views import ItemView, StoryView, view_of

BOOKKEEPING = {"timeline", "statement_keys", "statement_aliases", "order_key"}
NOT_PROJECTED = {"parked_at"}  # the query service reads it beside the state
AT_READ_TIME = {"schedule": dict[str, ItemView]}  # items say whether they are overdue now


def test_the_view_is_the_state_without_its_bookkeeping() -> None:
    state = {f.name: (f.type, f.default) for f in msgspec.structs.fields(StoryState)}
    view = {f.name: (f.type, f.default) for f in msgspec.structs.fields(StoryView)}
    assert {k: v for k, v in view.items() if k not in NOT_PROJECTED | AT_READ_TIME.keys()} == {
        k: v for k, v in state.items() if k not in BOOKKEEPING | AT_READ_TIME.keys()
    }
    assert not NOT_PROJECTED & state.keys()
    assert {k: view[k][0] for k in AT_READ_TIME} == AT_READ_TIME
    item = {f.name: (f.type, f.default) for f in msgspec.structs.fields(Item)}
    shown = {f.name: (f.type, f.default) for f in msgspec.structs.fields(ItemView)}
    assert {k: v for k, v in shown.items() if k != "overdue"} == item


def test_items_are_overdue_by_the_clock_given() -> None:
    state = StoryState(id="s")
    state.schedule["vote"] = Item("vote", "The vote", "scheduled", When("2020-05-30", "day"))
    before = view_of(state, datetime(2020, 5, 31, 11, 59, tzinfo=UTC))
    after = view_of(state, datetime(2020, 5, 31, 12, 0, tzinfo=UTC))
    assert (before.schedule["vote"].overdue, after.schedule["vote"].overdue) == (False, True)
