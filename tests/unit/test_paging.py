"""Where a page of the story list ends: a place read back as it was written, in the
by-time indexes' order."""

from __future__ import annotations

import pytest

from dateline.query.paging import BadPlace, Place
from dateline.store.readmodels import recorded_score


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
