"""The public story view stays in step with the projection's state."""

from __future__ import annotations

import msgspec

from dateline.domain.state import StoryState
from dateline.query.views import StoryView

BOOKKEEPING = {"timeline", "statement_keys", "statement_aliases", "order_key"}
NOT_PROJECTED = {"parked_at"}  # the query service reads it beside the state


def test_the_view_is_the_state_without_its_bookkeeping() -> None:
    state = {f.name: (f.type, f.default) for f in msgspec.structs.fields(StoryState)}
    view = {f.name: (f.type, f.default) for f in msgspec.structs.fields(StoryView)}
    assert {k: v for k, v in view.items() if k not in NOT_PROJECTED} == {
        k: v for k, v in state.items() if k not in BOOKKEEPING
    }
    assert not NOT_PROJECTED & state.keys()
