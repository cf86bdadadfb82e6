"""Live state pushes as JSON merge patches (`query/patches.py`): a patch turns the old
state into the new one, as a client applies it; one patch serves every stream that was
sent the same state. Pure."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dateline.query.patches import Patches, apply_patch, merge_patch, text_patch


def without_nulls(value: Any) -> Any:
    """What a client holds: RFC 7396 cannot set a member to null, only remove it."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return value


CASES = [
    ({"a": 1}, {"a": 2}),
    ({"a": 1, "b": 2}, {"a": 1}),
    ({"a": {"x": 1, "y": 2}}, {"a": {"x": 1, "y": 3, "z": [1, 2]}}),
    ({"s": {"k1": {"text": "t"}}}, {"s": {"k1": {"text": "t"}, "k2": {"text": "u"}}}),
    ({"l": [1, 2, 3]}, {"l": [1, 2]}),
    ({"o": {"r": "x"}}, {"o": None}),
    ({"o": None}, {"o": {"r": "x"}}),
    ({"d": {"a": 1}}, {"d": {}}),
    ({"d": [1]}, {"d": {"a": 1}}),
    ({}, {"a": {"b": {"c": None}}}),
]


@pytest.mark.parametrize(("old", "new"), CASES)
def test_a_patch_turns_the_old_state_into_the_new(old: Any, new: Any) -> None:
    patch = merge_patch(old, new)
    assert without_nulls(apply_patch(without_nulls(old), patch)) == without_nulls(new)


def _as_text(old: Any, new: Any) -> Any:
    """`text_patch` of the two as the process has them, encoded and decoded as sent."""
    patch = text_patch(msgspec.json.encode(old), msgspec.json.encode(new))
    return msgspec.json.decode(msgspec.json.encode(patch))


@pytest.mark.parametrize(("old", "new"), CASES)
def test_a_patch_made_from_the_text_is_the_patch_made_from_the_values(old: Any, new: Any) -> None:
    assert _as_text(old, new) == merge_patch(old, new)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_json, _json)
def test_any_two_states_patch_alike_from_text_and_from_values(old: Any, new: Any) -> None:
    assert _as_text(old, new) == merge_patch(old, new)
    assert without_nulls(apply_patch(without_nulls(old), _as_text(old, new))) == without_nulls(new)


@given(
    st.dictionaries(st.text(max_size=3), _json, max_size=4),
    st.dictionaries(st.text(max_size=3), _json, max_size=3),
)
def test_a_state_grown_by_members_at_its_end_patches_as_those_members(
    base: dict[str, Any], more: dict[str, Any]
) -> None:
    """Statements added to a story: found by the text's prefix, not by splitting."""
    for nested in (False, True):
        old = {"v": 1, "s": base} if nested else base
        grown = {**base, **{k: v for k, v in more.items() if k not in base}}
        new = {"v": 1, "s": grown} if nested else grown
        assert _as_text(old, new) == merge_patch(old, new)


def test_a_new_statement_patches_as_that_statement() -> None:
    statements = {f"s{i}": {"text": f"Remark {i}" * 20} for i in range(5000)}
    old = {"version": 10, "statements": statements}
    new = {"version": 11, "statements": {**statements, "s5000": {"text": "new"}}}
    patch = msgspec.json.encode(merge_patch(old, new))
    assert msgspec.json.decode(patch) == {"version": 11, "statements": {"s5000": {"text": "new"}}}
    assert (
        msgspec.json.encode(text_patch(msgspec.json.encode(old), msgspec.json.encode(new))) == patch
    )
    assert len(patch) < 100 < len(msgspec.json.encode(new)) // 1000


def test_one_patch_is_made_per_change_and_shared() -> None:
    patches = Patches()
    one, two, three = b'{"v":1,"a":[1]}', b'{"v":2,"a":[1,2]}', b'{"v":3,"a":[1,2,3]}'
    assert patches.between(None, one, "t1") is None  # a first state goes whole
    assert patches.between(None, one, "t1") is None  # another stream's first
    first = patches.between("t1", two, "t2")
    assert first is not None and msgspec.json.decode(first) == {"v": 2, "a": [1, 2]}
    assert patches.between("t1", two, "t2") is first  # the second stream: shared
    assert (patches.made, patches.shared) == (1, 1)
    # A stream that skipped a version (a page of two updates) is patched from its own.
    skipped = patches.between("t1", three, "t3")
    assert skipped is not None and msgspec.json.decode(skipped) == {"v": 3, "a": [1, 2, 3]}
    # A stream that was sent a state no longer kept gets the new one whole.
    assert patches.between("t0", b'{"v":4}', "t4") is None


def test_renderings_are_kept_within_a_budget() -> None:
    patches = Patches(max_bytes=100)
    patches.between(None, b"x" * 20, "a")
    for n in range(10):
        patches.between(None, b"y" * 20, f"b{n}")
    assert patches._bytes <= 100 and "a" not in patches._sent
    assert patches.between("a", b"z" * 20, "c") is None  # too old: whole
    patches.between(None, b"w" * 30, "big")  # over a quarter of the budget: never kept
    assert "big" not in patches._sent
