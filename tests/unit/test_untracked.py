"""States and updates are not tracked by the garbage collector (`gc=False`), which is
safe because each is a tree: nothing in one points back up to what holds it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import msgspec

from dateline.domain import fork, project
from dateline.projector.commit import pack, unpack
from dateline_schemas import decode_records
from tests.projection_helpers import hanoi
from tests.unit.test_projection import S


def _nodes(value: Any, path: str, above: tuple[int, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every object under `value` with its path; fails on one met again under itself."""
    assert id(value) not in above, f"a cycle at {path}: an object holds what holds it"
    yield path, value
    if isinstance(value, msgspec.Struct):
        children = [(f".{name}", getattr(value, name)) for name in value.__struct_fields__]
    elif isinstance(value, dict):
        children = [(f"[{key!r}]", child) for key, child in value.items()]
    elif isinstance(value, list | tuple):
        children = [(f"[{i}]", child) for i, child in enumerate(value)]
    else:
        return
    for step, child in children:
        yield from _nodes(child, path + step, (*above, id(value)))


def _structs(value: Any) -> list[Any]:
    return [node for _, node in _nodes(value, "") if isinstance(node, msgspec.Struct)]


def test_the_hanoi_story_state_is_a_tree_of_untracked_structs() -> None:
    for state in (project(S, hanoi()), unpack(pack(project(S, hanoi())))):
        structs = _structs(fork(state)[0])
        kinds = {type(s).__name__ for s in structs}
        assert {"StoryState", "Statement", "Item", "Entry"} <= kinds  # the walk saw them
        assert [type(s).__name__ for s in structs if gc.is_tracked(s)] == []


def test_decoded_updates_are_trees_of_untracked_structs() -> None:
    updates = decode_records([msgspec.json.encode(u) for u in hanoi()])
    structs = [s for update in updates for s in _structs(update)]
    assert len(structs) >= 2 * len(updates)  # each envelope and its data
    assert [type(s).__name__ for s in structs if gc.is_tracked(s)] == []


def test_a_kept_state_gives_the_collector_one_list_to_walk() -> None:
    """Its statements' refs, schedule items' shifts, order key and the like are tuples,
    which the collector stops tracking once it has seen them hold nothing it tracks; its
    dicts hold nothing tracked, so they are never tracked. Its timeline is the one list.
    A projector can then keep thousands of states decoded and a full collection still
    walks one object each."""
    for state in (project(S, hanoi()), unpack(pack(project(S, hanoi())))):
        gc.collect()
        found = [
            path
            for path, node in _nodes(state, "state")
            if isinstance(node, dict | list | tuple) and gc.is_tracked(node)
        ]
        assert found == ["state.timeline"]
