"""States and updates are not tracked by the garbage collector (`gc=False`), which is
safe because each is a tree: nothing in one points back up to what holds it."""

from __future__ import annotations

import gc
from typing import Any

import msgspec

from dateline.domain import fork, project
from dateline.projector.commit import pack, unpack
from dateline_schemas import decode_records
from tests.projection_helpers import hanoi
from tests.unit.test_projection import S


def _walk(value: Any, path: list[int], structs: list[Any]) -> None:
    """Every Struct under `value`; fails on an object met again on its own path."""
    assert id(value) not in path, "a cycle: an object holds what holds it"
    if isinstance(value, msgspec.Struct):
        structs.append(value)
        children: list[Any] = [getattr(value, f) for f in value.__struct_fields__]
    elif isinstance(value, dict):
        children = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple):
        children = list(value)
    else:
        return
    for child in children:
        _walk(child, [*path, id(value)], structs)


def test_the_hanoi_story_state_is_a_tree_of_untracked_structs() -> None:
    for state in (project(S, hanoi()), unpack(pack(project(S, hanoi())))):
        structs: list[Any] = []
        _walk(fork(state), [], structs)
        kinds = {type(s).__name__ for s in structs}
        assert {"StoryState", "Statement", "Item", "Entry"} <= kinds  # the walk saw them
        assert [type(s).__name__ for s in structs if gc.is_tracked(s)] == []


def test_decoded_updates_are_trees_of_untracked_structs() -> None:
    updates = decode_records([msgspec.json.encode(u) for u in hanoi()])
    structs: list[Any] = []
    for update in updates:
        _walk(update, [], structs)
    assert len(structs) >= 2 * len(updates)  # each envelope and its data
    assert [type(s).__name__ for s in structs if gc.is_tracked(s)] == []


def _tracked(value: Any, path: str, found: list[str]) -> None:
    """The paths of the containers under `value` that the collector tracks."""
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            _tracked(getattr(value, name), f"{path}.{name}", found)
        return
    if isinstance(value, dict | list | tuple):
        if gc.is_tracked(value):
            found.append(path)
        for key, child in value.items() if isinstance(value, dict) else enumerate(value):
            _tracked(child, f"{path}[{key!r}]", found)


def test_a_kept_state_gives_the_collector_one_list_to_walk() -> None:
    """Its statements' refs, schedule items' shifts, order key and the like are tuples,
    which the collector stops tracking once it has seen them hold nothing it tracks; its
    dicts hold nothing tracked, so they are never tracked. Its timeline is the one list.
    A projector can then keep thousands of states decoded and a full collection still
    walks one object each."""
    for state in (project(S, hanoi()), unpack(pack(project(S, hanoi())))):
        gc.collect()
        found: list[str] = []
        _tracked(state, "state", found)
        assert found == ["state.timeline"]
