"""A fork of a state folds in place while the state it came from stays as it was, and
the commit's writes from a fork are those of two states that share nothing."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from dateline.domain import advance_in_place, copy_state, fork, project
from dateline.domain.state import StoryState
from dateline.projector.commit import pack
from dateline.store.layout import Keys
from dateline.store.readmodels import Change, ReadModels
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


def test_a_fork_has_containers_of_its_own_and_shares_what_they_hold() -> None:
    state = project(S, hanoi())
    forked = fork(state)
    assert forked == state
    for name in StoryState.__struct_fields__:
        value = getattr(state, name)
        if isinstance(value, list | dict):
            assert getattr(forked, name) is not value, name  # a field fork() forgot
    said = next(iter(state.statements))
    assert forked.statements[said] is state.statements[said]


@settings(max_examples=200, deadline=None)
@given(events=events)
def test_folding_a_fork_leaves_the_state_it_came_from_as_it_was(
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
        before = pack(old)
        new = fork(old)
        said: list[str] = []
        if not advance_in_place(new, update, said):
            continue
        assert pack(old) == before
        assert replace(new, timeline=[]) == replace(project(S, records[: i + 1]), timeline=[])
        # The commit compares by identity first: its writes must be those of states
        # that share nothing.
        shared = models.commands([Change(old, new, whole_timeline=False)])
        apart = models.commands([Change(copy_state(old), copy_state(new), whole_timeline=False)])
        assert shared.commands == apart.commands
        assert msgspec.json.decode(shared.states[S]) == msgspec.json.decode(apart.states[S])
        # Told what the fold wrote, it looks at nothing else, and writes the same.
        told = models.commands([Change(old, new, whole_timeline=False, said=said)])
        assert told.commands == shared.commands
