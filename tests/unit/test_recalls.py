"""What a `reader` sees of an update recalled as erroneous (a `canceled` retraction):
nothing of its content, nor of the corrections of it, whose changes and notes carry
it; in every arrival order, read whole or one update at a time."""

from __future__ import annotations

import itertools

from dateline.domain import project
from dateline.domain.state import Hidden
from dateline.domain.story import project_for_reader, recalled, recalled_corrections
from dateline_schemas import Update
from dateline_schemas.correction import CorrectionIssued
from tests.projection_helpers import as_logged
from tests.unit.test_projection import S
from tests.unit.test_rule5 import SAID, WIRE_A, WIRE_B, naming

FIXED = "We will denuclearise, in steps"
FIX = naming(
    "correction.issued",
    "c-1",
    WIRE_A,
    {"corrects": "st-1", "changes": {"text": FIXED}, "note": "Fixed: in steps"},
    11,
)
FIX_OF_FIX = naming(
    "correction.issued",
    "c-2",
    WIRE_A,
    {"corrects": "c-1", "changes": {"note": "Fixed again: in two steps"}, "note": "again"},
    13,
)
RECALL = naming(
    "retraction.issued",
    "r-1",
    WIRE_A,
    {"retracts": "st-1", "status": "canceled", "reason": "misquoted"},
    12,
)
WITHHELD = naming(
    "retraction.issued",
    "r-1",
    WIRE_A,
    {"retracts": "st-1", "status": "withheld", "reason": "checking"},
    12,
)
OTHER = naming(
    "correction.issued",
    "c-9",
    WIRE_B,
    {"corrects": "st-9", "changes": {"text": "x"}, "note": "unrelated"},
    11,
)


def orders(docs: list[dict[str, object]]) -> list[list[Update]]:
    return [as_logged(list(order)) for order in itertools.permutations(docs)]


def test_a_correction_of_a_recalled_update_is_recalled_with_it_in_any_order() -> None:
    for updates in orders([SAID, FIX, FIX_OF_FIX, RECALL, OTHER]):
        gone = recalled(updates)
        assert set(gone) == {(WIRE_A, "st-1"), (WIRE_A, "c-1"), (WIRE_A, "c-2")}
        assert {h.retraction for h in gone.values()} == {"r-1"}
        assert all(h.status == "canceled" for h in gone.values())


def test_withheld_is_no_recall_and_takes_no_correction_with_it() -> None:
    for updates in orders([SAID, FIX, WITHHELD]):
        assert recalled(updates) == {}


def test_read_one_at_a_time_a_late_correction_of_a_recalled_update_is_recalled() -> None:
    """The live streams learn recalls update by update (`known`)."""
    for updates in orders([SAID, FIX, FIX_OF_FIX, RECALL]):
        known: dict[tuple[str, str], Hidden] = {}
        corrections: list[Update] = []  # what a live stream keeps of those it passed
        seen = []
        for u in sorted(updates, key=lambda u: u.version or 0):
            known = recalled([*corrections, u], known)
            seen.append((u.id, (u.source, u.id) in known))
            if isinstance(u, CorrectionIssued):
                corrections.append(u)
        # Once the recall arrived, what comes of it is recalled as it comes; a correction
        # that arrives before what it corrects is found with it (a resumed stream reads
        # the story's recalls whole first, and redacts it).
        ids = [uid for uid, _ in seen]
        for uid, out in seen:
            if ids.index(uid) > ids.index("r-1") and uid in ("st-1", "c-1"):
                assert out, (uid, seen)
            if uid == "c-2" and ids.index(uid) > max(ids.index("r-1"), ids.index("c-1")):
                assert out, seen
        assert known == recalled(updates)


def test_a_reader_folds_the_story_without_the_recalled_and_their_corrections() -> None:
    for updates in orders([SAID, FIX, FIX_OF_FIX, RECALL, OTHER]):
        state = project_for_reader(S, updates, recalled(updates))
        assert state.statements == {}
        assert [n.id for n in state.corrections] == ["c-9"]
        assert FIXED not in str(state) and "Fixed" not in str(state)
        # Listed as retracted: the update recalled, not the corrections of it.
        assert [(h.id, h.source) for h in state.hidden] == [("st-1", WIRE_A)]
        assert state.version == max(u.version or 0 for u in updates)


def test_the_notes_a_read_model_keeps_of_corrections_of_the_recalled_are_found() -> None:
    """The read model keeps such notes (unapplied, for editors); the query leaves them
    out for readers."""
    for updates in orders([SAID, FIX, FIX_OF_FIX, RECALL, OTHER]):
        state = project(S, updates)
        assert {n.id for n in state.corrections} == {"c-1", "c-2", "c-9"}
        out = recalled_corrections(state.corrections, state.hidden)
        assert out == {(WIRE_A, "c-1"), (WIRE_A, "c-2")}
