"""How updates of a story are ordered (`domain/order.py`)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dateline.domain.instants import iso_text
from dateline.domain.order import fold_text, order_key, sort_instant, statement_key
from dateline_schemas import decode_update
from tests.factories import encode, update

PRECISIONS = ["month", "day", "approximate", "minute", "exact"]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("time", ["2019-02-28T23:59:00+07:00", "2019-02-01T00:30:00-05:00"])
def test_the_order_key_sorts_at_the_instant_sort_instant_gives(precision: str, time: str) -> None:
    """`order_key` finds the instant of most precisions itself, without the call: it
    must be the one `sort_instant` gives, for every precision."""
    doc = update("dateline.story.concluded", data={}, time=time, timeprecision=precision)
    u = decode_update(encode(doc)).update
    assert order_key(u)[0] == sort_instant(u)


def test_a_day_sorts_before_every_known_time_of_that_day() -> None:
    def key(time: str, precision: str) -> tuple[object, ...]:
        doc = update("dateline.story.concluded", data={}, time=time, timeprecision=precision)
        return order_key(decode_update(encode(doc)).update)

    day = key("2022-05-28T23:59:00+02:00", "day")
    assert day < key("2022-05-28T00:01:00+02:00", "exact")
    assert day < key("2022-05-28T00:00:00+02:00", "approximate")


def _folded_the_long_way(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


# Every character `str.split` splits on, and some NFKC turns into a space.
_SPACES = "".join(
    c for c in map(chr, range(0x3001)) if c.isspace() or unicodedata.normalize("NFKC", c) == " "
)


@settings(max_examples=400)
@given(st.text(alphabet=st.sampled_from(" aZé\u00c5\u212b\ufb01" + _SPACES), max_size=12))
def test_fold_text_is_nfkc_casefolded_with_its_whitespace_folded(text: str) -> None:
    """`fold_text` returns a text it finds folded already as it is: it must be the text
    the whole fold (normalize, casefold, split, join) would give, whatever it holds."""
    assert fold_text(text) == _folded_the_long_way(text)


@pytest.mark.parametrize(
    "text", ["We talked.", " We talked.", "We talked. ", "We  talked.", "We\ttalked.", "We\u00a0t"]
)
def test_fold_text_on_texts_that_look_folded(text: str) -> None:
    assert fold_text(text) == _folded_the_long_way(text)


@pytest.mark.parametrize(
    "time", ["2019-02-28T23:59:00+07:00", "2019-02-28T00:30:00-11:00", "0999-12-31T23:59:00Z"]
)
def test_a_statement_key_names_the_day_in_the_updates_own_offset(time: str) -> None:
    doc = update("dateline.story.concluded", data={}, time=time)
    when = decode_update(encode(doc)).update.time
    key = statement_key("Kim", "Hello", iso_text(when))
    assert key.endswith("\x1f" + when.date().isoformat())
