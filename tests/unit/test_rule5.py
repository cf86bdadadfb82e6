"""Rule 5, who may correct: an update of another source is corrected or retracted only
by a writer the log recorded as holding the editor right; in every arrival order."""

from __future__ import annotations

import itertools
from collections.abc import Set as AbstractSet
from typing import Any

import msgspec

from dateline.domain import project
from dateline.domain.state import StoryState
from dateline_schemas import Update
from tests.factories import update
from tests.projection_helpers import as_logged
from tests.unit.test_projection import S, live

WIRE_A, WIRE_B = "urn:feed:wire-a", "urn:feed:wire-b"
SAID = update(
    "dateline.statement.made",
    id="st-1",
    source=WIRE_A,
    time="2019-02-28T10:00:00+07:00",
    data={"statement": "s1", "speaker": "Kim Jong Un", "text": "We will denuclearise"},
)


def naming(type_: str, uid: str, source: str, data: dict[str, Any], hour: int) -> dict[str, Any]:
    return update(
        f"dateline.{type_}", id=uid, source=source, time=f"2019-02-28T{hour}:00:00+07:00", data=data
    )


FORGED = naming(
    "correction.issued",
    "c-1",
    WIRE_B,
    {"corrects": "st-1", "target_source": WIRE_A, "changes": {"text": "Forged"}, "note": "n"},
    11,
)
RETRACTED = naming(
    "retraction.issued",
    "r-1",
    WIRE_B,
    {"retracts": "st-1", "target_source": WIRE_A, "status": "canceled", "reason": "x"},
    12,
)


def states(docs: list[dict[str, Any]], editors: AbstractSet[str] = frozenset()) -> list[StoryState]:
    """The state from every arrival order; `editors`: ids whose writer held the right."""
    out = []
    for order in itertools.permutations(docs):
        records: list[Update] = [
            msgspec.structs.replace(r, editor=True) if r.id in editors else r
            for r in as_logged(list(order))
        ]
        state = project(S, records)
        assert live(records) == state
        out.append(state)
    return out


def test_another_sources_correction_without_the_right_changes_nothing() -> None:
    for state in states([SAID, FORGED]):
        assert state.statements["s1"].text == "We will denuclearise"
        [note] = state.corrections
        assert note.applied is False and "rule 5" in (note.problem or "")
        assert (note.source, note.target_source) == (WIRE_B, WIRE_A)


def test_an_editors_correction_of_another_sources_update_applies() -> None:
    for state in states([SAID, FORGED], editors={"c-1"}):
        assert state.statements["s1"].text == "Forged"
        [note] = state.corrections
        assert note.applied and note.source == WIRE_B  # who issued it


def test_without_target_source_a_correction_names_its_own_sources_update() -> None:
    """The forgery of the probe: wire-b names wire-a's id, as its own: it corrects
    nothing of wire-a's, and waits (held) for a wire-b update of that id."""
    own = naming(
        "correction.issued",
        "c-2",
        WIRE_B,
        {"corrects": "st-1", "changes": {"text": "Forged"}, "note": "n"},
        11,
    )
    for state in states([SAID, own]):
        assert state.statements["s1"].text == "We will denuclearise"
        [note] = state.corrections
        assert (note.applied, note.problem, note.target_source) == (False, None, WIRE_B)


def test_another_sources_retraction_without_the_right_hides_nothing() -> None:
    for state in states([SAID, RETRACTED]):
        assert "s1" in state.statements and state.hidden == ()
    for state in states([SAID, RETRACTED], editors={"r-1"}):
        assert state.statements == {}
        assert [(h.id, h.source) for h in state.hidden] == [("st-1", WIRE_A)]


def test_a_same_sources_correction_needs_no_right() -> None:
    own = naming(
        "correction.issued",
        "c-3",
        WIRE_A,
        {"corrects": "st-1", "changes": {"text": "Fixed"}, "note": "n"},
        11,
    )
    for state in states([SAID, own]):
        assert state.statements["s1"].text == "Fixed"
        assert state.corrections[0].source == WIRE_A
