"""The one-line summaries the timeline and the live feed show."""

from __future__ import annotations

import pytest

from dateline.domain.evolve import ARMS
from dateline.domain.summary import LINES as LINE_OF_TYPE
from dateline.domain.summary import summarize
from dateline_schemas import TYPES, UPDATE_CLASSES, decode_update
from tests.factories import DATA, encode, update


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


LINES = {
    "dateline.correction.issued": "Correction of wire-a-0001: An earlier version misnamed the summit.",
    "dateline.expectation.raised": "Expectation yongbyon: A pledge",
    "dateline.expectation.resolved": "Expectation yongbyon unmet: No",
    "dateline.outcome.reported": "Outcome: no agreement: No agreement was reached",
    "dateline.retraction.issued": "Retraction (withheld) of wire-a-0002: Unconfirmed",
    "dateline.retraction.lifted": "Retraction of wire-a-0002 lifted",
    "dateline.schedule.announced": (
        "Scheduled press-conference: Press conference at 2019-02-28T16:00:00+07:00"
    ),
    "dateline.schedule.cancelled": "Cancelled working-lunch (Cut at the last minute)",
    "dateline.schedule.ended": "Ended summit early",
    "dateline.schedule.postponed": "Postponed working-lunch (Talks overran)",
    "dateline.schedule.reinstated": "Reinstated working-lunch",
    "dateline.schedule.relocated": "Relocated summit to Metropole hotel",
    "dateline.schedule.rescheduled": "Rescheduled press-conference: moved up 2 h",
    "dateline.schedule.started": "Started summit",
    "dateline.statement.made": (
        "Kim Jong Un through an interpreter: “If I’m not willing to do that, I won’t be here "
        "right now”"
    ),
    "dateline.story.concluded": "Story concluded: Ended without agreement.",
    "dateline.story.linked": "Linked prior story: singapore-summit-2018",
    "dateline.story.opened": "Story opened: Second US–North Korea summit, Hanoi",
    "dateline.story.reopened": "Story reopened (Talks resume.)",
}


def test_every_type_has_its_line_and_its_arm() -> None:
    """The lines and the fold's arms are tables by type (`summary.LINES`,
    `evolve.ARMS`): a type added to the contract and to neither fails here, not with a
    KeyError in the projector."""
    assert set(LINE_OF_TYPE) == set(UPDATE_CLASSES)
    assert set(ARMS) == set(UPDATE_CLASSES)
    assert set(LINES) == set(TYPES)


@pytest.mark.parametrize("type_", sorted(LINES))
def test_each_type_reads_as_it_did(type_: str) -> None:
    """Each type's line for the factory's example, as the timeline has always shown it."""
    assert summarize(decode_update(encode(update(type_, data=DATA[type_]))).update) == LINES[type_]
