"""A fork of a state folds in place while the state it came from stays as it was but for
its statements and merge keys, which the two share and the journal undoes; the commit's
writes from a fork are those of two states that share nothing."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from dateline.domain import advance_in_place, copy_state, fork, project, unfold
from dateline.domain.state import StoryState
from dateline.projector.commit import pack
from dateline.store.layout import Keys
from dateline.store.readmodels import OWN_STATEMENTS, Change, ReadModels, _unfolded
from tests.projection_helpers import as_logged, hanoi
from tests.unit.test_projection import S
from tests.unit.test_projection_properties import KINDS, doc

events = st.lists(
    st.tuples(
        st.sampled_from([*KINDS, "said", "restated", "restated"]),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["urn:feed:wire-a", "urn:feed:wire-b"]),
        st.integers(-3, 3),
    ),
    min_size=1,
    max_size=14,
)
"""As the properties' events, with more statements, some of them written again."""


def test_a_fork_has_containers_of_its_own_but_two_and_shares_what_they_hold() -> None:
    state = project(S, hanoi())
    forked, journal = fork(state)
    assert forked == state
    assert (journal.statements, journal.keys) == (
        len(state.statements),
        len(state.statement_keys),
    )
    for name in StoryState.__struct_fields__:
        value = getattr(state, name)
        if name in ("statements", "statement_keys"):  # what grows with the story
            assert getattr(forked, name) is value
        elif isinstance(value, list | dict):
            assert getattr(forked, name) is not value, name  # a field fork() forgot
    said = next(iter(state.statements))
    assert forked.statements[said] is state.statements[said]


@settings(max_examples=200, deadline=None)
@given(events=events)
def test_folding_a_fork_leaves_the_state_it_came_from_as_it_was_once_undone(
    events: list[tuple[str, str, str, int]],
) -> None:
    records = as_logged(
        [
            doc(kind, i, ref, source, i + offset)
            for i, (kind, ref, source, offset) in enumerate(events)
        ]
    )
    models = ReadModels(Keys("t", 8), "v1")
    for i, update in enumerate(records):
        old = project(S, records[:i])
        old.timeline = []  # as the projector keeps it
        before, was = pack(old), copy_state(old)
        new, journal = fork(old)
        if not advance_in_place(new, update, journal.said):
            assert pack(old) == before
            continue
        assert replace(new, timeline=[]) == replace(project(S, records[: i + 1]), timeline=[])
        # Told what the fold wrote, the commit writes what it would write comparing two
        # states that share nothing.
        told = models.commands([Change(old, new, whole_timeline=False, journal=journal)])
        apart = models.commands([Change(was, copy_state(new), whole_timeline=False)])
        assert told.commands == apart.commands
        assert msgspec.json.decode(told.states[S]) == msgspec.json.decode(apart.states[S])
        # An older shape (statements inline) compares them, with `old` as it was.
        older = ReadModels(Keys("t", 8), "v1", shape=OWN_STATEMENTS - 1)
        inline = older.commands([Change(old, new, whole_timeline=False, journal=journal)])
        alone = older.commands([Change(was, copy_state(new), whole_timeline=False)])
        assert inline.commands == alone.commands
        # What a commit falls back to if the statements are not as it was told: `old`
        # as it was, undone from the journal into copies, compared.
        undone = _unfolded(Change(old, new, whole_timeline=False, journal=journal))
        assert models.commands([undone]).commands == apart.commands
        unfold(old, journal)
        assert pack(old) == before  # in the order it had
