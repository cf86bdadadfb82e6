"""Where a page of the story list ends (a place read back as it was written, in the
by-time indexes' order), and a page of a board (a mark, oldest first)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from dateline.query.boardpage import Bounds, index_mark, settled
from dateline.query.paging import BadMark, BadPlace, Mark, Place, paged
from dateline.store.readmodels import _start, recorded_score
from dateline_schemas import parse_fuzzy_date


@pytest.mark.parametrize(
    "place",
    [
        Place.of("hanoi-summit-2019", "2026-12-06T23:36:09.877000+00:00"),
        Place.of("a", None),
        Place(1e-05, "x-1"),
        Place(1796600169.8770001, "b"),
    ],
)
def test_a_place_reads_back_as_it_was_written(place: Place) -> None:
    assert Place.parse(str(place)) == place


def test_places_order_as_the_by_time_index_newest_last() -> None:
    at = "2026-12-06T23:36:09.877000+00:00"
    assert Place.of("b", at) > Place.of("a", at)  # a tie: the larger id first, newest first
    assert Place.of("a", "2026-12-06T23:36:09.878000+00:00") > Place.of("b", at)
    assert Place.of("a", at).score == recorded_score(at)


@pytest.mark.parametrize(
    "text",
    ["", "yesterday", "1.5", "1.5:", ":story", "nan:story", "inf:story", "1.5:Bad_Id", "x:story"],
)
def test_anything_but_a_next_is_refused_by_what_it_is(text: str) -> None:
    with pytest.raises(BadPlace, match="expected the `next` of a page of this list"):
        Place.parse(text)


@pytest.mark.parametrize(
    "mark",
    [
        Mark.of(datetime(2019, 2, 28, 13, 25, tzinfo=timezone(timedelta(hours=7))), "a", "x"),
        Mark.of(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "a-1", "r.1:z"),
        Mark.of(None, "hanoi-summit-2019", "press-conference"),
    ],
)
def test_a_mark_reads_back_as_it_was_written(mark: Mark) -> None:
    assert Mark.parse(str(mark)) == mark


def test_marks_order_by_instant_to_the_microsecond_then_story_and_ref_undated_last() -> None:
    t = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    same_in_hanoi = t.astimezone(timezone(timedelta(hours=7)))
    assert Mark.of(t, "a", "x") == Mark.of(same_in_hanoi, "a", "x")  # an instant, not a text
    later = t + timedelta(microseconds=1)  # a float's seconds cannot tell these apart
    assert Mark.of(t, "z", "z") < Mark.of(later, "a", "a")
    assert Mark.of(t, "a", "y") < Mark.of(t, "b", "x") < Mark.of(t, "b", "y")
    assert Mark.of(datetime(9999, 1, 1, tzinfo=UTC), "z", "z") < Mark.of(None, "a", "a")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1~a",
        "1~a~",
        "x~a~b",
        "1.5~a~b",
        "-~Bad~b",
        "1~a~b~c d",
        "~a~b",
        "1~a~_b",
        "1_0~a~b",
        " 1~a~b",
        "+1~a~b",
    ],
)
def test_anything_but_a_board_s_next_is_refused(text: str) -> None:
    with pytest.raises(BadMark, match="expected the `next` of a page of this board"):
        Mark.parse(text)


def test_a_board_cut_in_pages_gives_each_entry_once() -> None:
    entries = [(n % 3, f"s{n % 2}", f"r{n}") for n in range(11)]

    def mark(e: tuple[int, str, str]) -> Mark:
        return Mark.of(datetime.fromtimestamp(e[0], UTC), e[1], e[2])

    whole, last = paged(entries, mark, None, None)
    assert last is None and whole == sorted(entries, key=mark)
    for limit in range(1, 13):
        got, after = [], None
        for _ in range(20):
            page, nxt = paged(entries, mark, limit, None if after is None else Mark.parse(after))
            got += page
            if (after := nxt) is None:
                break
        assert got == whole, limit


@pytest.mark.parametrize(
    "start",
    [
        "2019-02-28T09:00:00+07:00",
        "2019-02-28T09:00:00.000001-03:30",
        "2026-12-06T23:36:09.877123Z",
        "2105-12-31T23:59:59.999999+14:00",
        "1970-01-01T00:00:00.000001Z",
        "2019-02-28",
        "2019-02",
    ],
)
def test_an_index_member_is_marked_as_its_entry_on_the_whole_board(start: str) -> None:
    """A page read by the index orders by the score's microseconds; the whole board by its
    start's text: the same mark, so `next` means one place whichever way it was read."""
    score = _start(start)
    assert index_mark(b"desk-a/talks:1", score) == Mark.of(
        parse_fuzzy_date(start).start, "desk-a", "talks:1"
    )
    assert index_mark(b"desk/x", math.inf) == Mark(True, 0, "desk", "x")


def test_a_range_holds_no_item_without_a_start_and_the_whole_board_all() -> None:
    assert Bounds().holds(math.inf) and Bounds().holds(-1.0) and Bounds().top == "inf"
    assert not Bounds(low=5.0).holds(math.inf) and Bounds(low=5.0).top == "(inf"
    assert Bounds(low=5.0).holds(5.0) and not Bounds(low=5.0).holds(4.9)
    assert Bounds(high=5.0).holds(5.0) and not Bounds(high=5.0).holds(math.inf)


def test_what_is_settled_stops_at_the_lowest_score_a_region_was_cut_at() -> None:
    """Past a region's last score read, it may hold members not read yet: what is kept
    of every region ends there, ties at that score included, ordered by story and ref."""
    cut_short = [(b"desk/b", 10.0), (b"desk-a/a", 20.0), (b"desk/a", 20.0)]
    whole = [(b"desk-a/c", 15.0), (b"desk-z/a", 20.0), (b"desk-b/a", 30.0)]
    found, end = settled([cut_short, whole], [20.0, None], None, Bounds())
    assert [m for _, m in found] == [b"desk/b", b"desk-a/c", b"desk/a", b"desk-a/a", b"desk-z/a"]
    assert end == index_mark(b"desk-z/a", 20.0)
    after = index_mark(b"desk/a", 20.0)
    found, end = settled([cut_short, whole], [None, None], after, Bounds())
    assert [m for _, m in found] == [b"desk-a/a", b"desk-z/a", b"desk-b/a"] and end is None
