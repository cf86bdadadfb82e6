"""The projector's kept states: the least recently used go, past a count or a size."""

from __future__ import annotations

from dateline.domain.state import Entry, Statement, StoryState
from dateline.projector.commit import (
    KEEP_BYTES,
    KEEP_STORIES,
    WARM_PARTS,
    WARM_STORIES,
    Kept,
    decoded,
    parts,
)
from dateline.projector.commit import kept as bounded


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


def test_states_dropped_past_the_bounds_are_counted_and_no_others() -> None:
    """What the warning on reads again counts (`projector/warmth.py`): not a state
    forgotten, nor one kept anew in its own place."""
    states = Kept(2, max_bytes=100)
    states.keep("a", b"x", "1")
    states.keep("a", b"xx", "2")  # its own place
    states.keep("b", b"x", "1")
    states.forget(["b"])
    assert states.dropped == 0
    for story in "bcd":
        states.keep(story, b"x", "1")
    assert states.dropped == 2  # a, then b
    states.keep("e", b"x" * 100, "1")  # past the bytes: c and d go
    assert (states.dropped, list(states.states)) == (4, ["e"])


def test_each_bound_scales_with_its_setting() -> None:
    """Both the count and the size: with a fixed count of 4,096 decoded states, 10,000
    small stories in play met the count while 64 MB held more, and raising the setting
    that the warning named changed nothing."""
    default = bounded()
    assert (default.warm_size, default.warm_parts) == (WARM_STORIES, WARM_PARTS)
    assert (default.size, default.max_bytes) == (KEEP_STORIES + WARM_STORIES, KEEP_BYTES)
    more = bounded(warm_mb=256, keep_mb=128)
    assert (more.warm_size, more.warm_parts) == (4 * WARM_STORIES, 4 * WARM_PARTS)
    assert (more.size, more.max_bytes) == (4 * (KEEP_STORIES + WARM_STORIES), 4 * KEEP_BYTES)
    least = bounded(warm_mb=1, keep_mb=1)
    assert least.warm_size == WARM_STORIES // 64 and least.max_bytes == 2**20


def story(name: str, statements: int = 0) -> StoryState:
    said = {
        f"s{i}": Statement(f"s{i}", "Kim Jong Un", "Words", "2019-02-28T06:15:00+00:00", "exact")
        for i in range(statements)
    }
    return StoryState(id=name, statements=said)


def test_the_stories_written_last_stay_decoded_and_the_others_cool_to_bytes() -> None:
    kept = Kept(10, warm=2)
    a, b, c = story("a"), story("b"), story("c")
    kept.keep("a", a, "1")
    kept.keep("b", b, "2")
    assert kept.get("a") == (a, "1")  # the same object: a batch forks it, never changes it
    kept.keep("c", c, "3")  # b is the least recently used warm story
    assert list(kept.warm) == ["a", "c"]
    held, sha = kept.get("b") or (None, "")
    assert isinstance(held, bytes) and sha == "2"
    assert decoded(held) == b
    assert kept.bytes == len(held)
    kept.forget(["a", "b"])
    assert (list(kept.states), list(kept.warm), kept.bytes) == (["c"], ["c"], 0)


def test_warm_states_are_bounded_by_their_parts_too() -> None:
    kept = Kept(10, warm=10, warm_parts=25)
    kept.keep("a", story("a", 10), "1")
    kept.keep("b", story("b", 10), "2")
    assert kept.parts == 22  # each state counts one besides its statements
    kept.keep("c", story("c", 10), "3")
    assert list(kept.warm) == ["b", "c"]
    assert isinstance(kept.states["a"][0], bytes)
    kept.keep("b", story("b"), "4")  # kept anew: its old parts are not counted twice
    assert kept.parts == 12
    kept.clear()
    assert (len(kept), kept.bytes, kept.parts, len(kept.warm)) == (0, 0, 0, 0)


def test_a_warm_state_that_grows_past_the_count_goes_like_any() -> None:
    kept = Kept(2, warm=5)
    for name in "abc":
        kept.keep(name, story(name), "f")
    assert (list(kept.states), list(kept.warm)) == (["b", "c"], ["b", "c"])
    assert kept.parts == 2


def test_a_state_past_the_warm_parts_alone_is_kept_packed_and_cools_no_other() -> None:
    kept = Kept(10, warm=10, warm_parts=25)
    kept.keep("a", story("a", 5), "1")
    huge = story("huge", 30)
    kept.keep("huge", huge, "2")
    assert list(kept.warm) == ["a"]  # still warm: the huge one did not push it out
    held, sha = kept.get("huge") or (None, "")
    assert isinstance(held, bytes) and sha == "2"
    assert decoded(held) == huge
    assert (kept.parts, kept.bytes) == (6, len(held))
    kept.keep("huge", story("huge"), "3")  # small again: warm like any
    assert list(kept.warm) == ["a", "huge"]
    assert (kept.parts, kept.bytes) == (7, 0)


def test_a_states_parts_count_its_timeline_too() -> None:
    """A story of many updates to a few items is large as objects: its timeline is most
    of it (700 bytes an entry or a part, measured), so the warm bound counts it."""
    entries = [
        Entry(n, f"u{n}", "schedule.rescheduled", "t", "exact", "moved", "w") for n in range(40)
    ]
    assert parts(StoryState(id="a", timeline=entries)) == 41
    kept = Kept(10, warm=10, warm_parts=50)
    kept.keep("a", StoryState(id="a", timeline=entries), "1")
    kept.keep("b", StoryState(id="b", timeline=entries), "2")
    assert list(kept.warm) == ["b"]


def cycle(kept: Kept, order: str, rounds: int) -> list[str]:
    """Each story of `order` in turn, as a batch uses it: found, folded, kept anew. Which
    were found packed (decoded again), in the last round."""
    again = []
    for n in range(rounds):
        for name in order:
            held, _ = kept.get(name) or (story(name), "")
            if n == rounds - 1 and isinstance(held, bytes):
                again.append(name)
            kept.keep(name, decoded(held), "f")
    return again


def test_stories_that_come_round_in_turn_past_the_tier_keep_some_warm() -> None:
    """Past the tier, plain recency pushed out the story about to come next: every update
    decoded its state again. The warm stay unless the newcomer was written later."""
    kept = Kept(10, warm=2)
    assert cycle(kept, "abc", rounds=5) == ["a"]  # by recency alone: a, b and c
    assert list(kept.warm) == ["b", "c"]


def test_a_story_hot_again_goes_warm_on_its_second_update_in_a_row() -> None:
    kept = Kept(10, warm=2)
    cycle(kept, "abc", rounds=3)
    assert cycle(kept, "a", rounds=1) == ["a"]  # decoded again, and packed again
    assert list(kept.warm) == ["b", "c"]
    assert cycle(kept, "a", rounds=1) == ["a"]  # written after b and c: it goes warm
    assert list(kept.warm) == ["c", "a"]
    assert cycle(kept, "a", rounds=1) == []
    kept.keep("d", story("d"), "f")  # new to this process: warm like any
    assert list(kept.warm) == ["a", "d"]
    assert "b" in kept.cooled
    kept.forget(["b"])
    assert "b" not in kept.cooled
