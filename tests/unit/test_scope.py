"""The Lens (`query/scope.py`): what a reader is shown of a stored state; pure."""

from __future__ import annotations

from datetime import UTC, datetime

from dateline.domain import project
from dateline.query.scope import Lens
from dateline.query.views import view_of
from dateline.store.readers import Grant
from tests.projection_helpers import as_logged
from tests.unit.test_projection import S
from tests.unit.test_recalls import FIX, FIX_OF_FIX, OTHER, RECALL
from tests.unit.test_rule5 import SAID

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_reader_is_not_shown_the_notes_of_corrections_of_a_recalled_update() -> None:
    state = project(S, as_logged([SAID, FIX, FIX_OF_FIX, RECALL, OTHER]))
    reader = Lens.of(Grant("r", "reader", []))
    editor = Lens.of(Grant("e", "editor", []))
    assert [n.id for n in reader.view(view_of(state, NOW)).corrections] == ["c-9"]
    assert {n.id for n in editor.view(view_of(state, NOW)).corrections} == {"c-1", "c-2", "c-9"}
    assert [h.id for h in reader.view(view_of(state, NOW)).hidden] == ["st-1"]


def test_a_withheld_update_keeps_its_corrections_notes_for_readers() -> None:
    """Withheld is for a while (it may be lifted); only a recall takes the notes out."""
    withheld = {**RECALL, "data": {**RECALL["data"], "status": "withheld"}}
    state = project(S, as_logged([SAID, FIX, withheld]))
    reader = Lens.of(Grant("r", "reader", []))
    assert [n.id for n in reader.view(view_of(state, NOW)).corrections] == ["c-1"]
