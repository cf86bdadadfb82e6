"""The one-line summaries the timeline and the live feed show."""

from __future__ import annotations

import pytest

from dateline.domain.summary import summarize
from dateline_schemas import decode_update
from tests.factories import encode, update


@pytest.mark.parametrize(
    ("shift", "said"),
    [
        ("-PT2H", "moved up 2 h"),
        ("PT30M", "pushed back 30 min"),
        ("P1DT1H", "pushed back 1 d 1 h"),
        ("-PT90M", "moved up 1 h 30 min"),
        ("PT45S", "pushed back 45 s"),
    ],
)
def test_a_shift_reads_as_an_editor_would_say_it(shift: str, said: str) -> None:
    doc = update("dateline.schedule.rescheduled", data={"item": "press-conference", "shift": shift})
    assert summarize(decode_update(encode(doc)).update) == f"Rescheduled press-conference: {said}"
