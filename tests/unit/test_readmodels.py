"""The commands that write a story's read models: pure, no I/O."""

from __future__ import annotations

import msgspec

from dateline.domain import project
from dateline.domain.state import Statement, StoryState
from dateline.store.readmodels import OWN_STATEMENTS, Change, ReadModels, _stored, without_timeline
from tests.projection_helpers import hanoi


def statement(ref: str, text: str = "Words") -> Statement:
    return Statement(ref, "Kim Jong Un", text, "2019-02-28T06:15:00+00:00", "exact")


def state(version: int, *refs: str, **changed: str) -> StoryState:
    said = {ref: statement(ref, changed.get(ref, "Words")) for ref in refs}
    return StoryState(id="talks", version=version, statements=said)


def on_list(commands: list[tuple[object, ...]], models: ReadModels) -> list[tuple[object, ...]]:
    return [c for c in commands if c[1] == models.statements("talks")]


def test_a_commit_appends_new_statements_and_rewrites_changed_ones_in_place() -> None:
    models = ReadModels("t", "v1")
    old, new = state(2, "a", "b"), state(3, "a", "b", "c", b="Other words")
    writes = models.commands([Change(old, new, whole_timeline=False)])
    key = models.statements("talks")
    member = b'"b":' + msgspec.json.encode(new.statements["b"])
    assert on_list(writes.commands, models) == [
        ("LSET", key, 1, member),
        ("RPUSH", key, b'"c":' + msgspec.json.encode(new.statements["c"])),
    ]
    assert msgspec.json.decode(writes.states["talks"])["statements"] == {}


def test_statements_out_of_their_old_order_are_written_anew() -> None:
    models = ReadModels("t", "v1")
    old, new = state(2, "b", "c"), state(3, "a", "b", "c")  # a late one sorts first
    commands = on_list(models.commands([Change(old, new, whole_timeline=False)]).commands, models)
    assert [c[0] for c in commands] == ["DEL", "RPUSH"]
    assert len(commands[1]) == 2 + 3


def test_a_version_of_an_older_shape_keeps_statements_inline() -> None:
    models = ReadModels("t", "v1", shape=OWN_STATEMENTS - 1)
    writes = models.commands([Change(state(0), state(1, "a"), whole_timeline=False)])
    assert on_list(writes.commands, models) == []
    assert list(msgspec.json.decode(writes.states["talks"])["statements"]) == ["a"]


def test_merge_keys_are_kept_apart_and_written_when_new() -> None:
    models = ReadModels("t", "v1")
    old = state(1, "a")
    old.statement_keys = {"kim\x1fwords\x1f2019-02-28": "a"}
    new = state(2, "a", "b")
    new.statement_keys = {**old.statement_keys, "kim\x1fother\x1f2019-02-28": "b"}
    writes = models.commands([Change(old, new, whole_timeline=False)])
    key = models.merge_keys("talks")
    assert [c for c in writes.commands if c[1] == key] == [
        ("HSET", key, "kim\x1fother\x1f2019-02-28", "b")
    ]
    assert "statement_keys" not in msgspec.json.decode(writes.states["talks"])
    whole = models.commands([Change(old, new, whole_timeline=True)]).commands
    assert [c[0] for c in whole if c[1] == key] == ["DEL", "HSET"]


def test_a_stored_state_is_the_state_without_timeline_merge_keys_or_statements() -> None:
    """The bytes shape 3 has always stored (the readers' splice needs `"statements":{}`),
    now made without converting the state to builtins first."""
    state = project("hanoi-summit-2019", hanoi())
    assert state.statements and state.statement_keys and state.timeline
    before = without_timeline(msgspec.structs.replace(state, statements={}, statement_keys={}))
    del before["statement_keys"]
    stored = msgspec.json.encode(_stored(state))
    assert stored == msgspec.json.encode(before)
    assert b'"statements":{}' in stored
