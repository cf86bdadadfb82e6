"""The projector's kept states: the least recently used go, past a count or a size."""

from __future__ import annotations

from dateline.projector.commit import Kept


def test_past_its_size_in_bytes_the_least_recently_used_go() -> None:
    kept = Kept(10, max_bytes=100)
    kept.keep("a", b"x" * 40, "1")
    kept.keep("b", b"x" * 40, "2")
    assert kept.get("a") is not None  # a is now the more recent
    kept.keep("c", b"x" * 40, "3")
    assert list(kept.states) == ["a", "c"]
    assert kept.bytes == 80
    kept.keep("a", b"x" * 90, "4")  # grown: c goes
    assert list(kept.states) == ["a"]
    assert kept.bytes == 90
    kept.forget(["a"])
    assert (len(kept), kept.bytes) == (0, 0)


def test_past_its_count_the_least_recently_used_go() -> None:
    kept = Kept(2, max_bytes=10**9)
    for story in "abc":
        kept.keep(story, b"s", "f")
    assert list(kept.states) == ["b", "c"]
    kept.clear()
    assert (len(kept), kept.bytes) == (0, 0)
