"""Pure projection: the story state from its updates, by the contract's derivation rules."""

from __future__ import annotations

from datetime import datetime

import msgspec
import pytest

from dateline.domain import advance, project
from dateline.domain.state import StoryState
from dateline_schemas import Update
from tests.factories import update
from tests.projection_helpers import HANOI_VERSION, as_logged, hanoi

S = "hanoi-summit-2019"


def live(updates: list[Update]) -> StoryState:
    """What the projector does: advance when it can, refold from history when it must."""
    state = StoryState(id=S)
    for i, u in enumerate(updates):
        state = advance(state, u) or project(S, updates[: i + 1])
    return state


def test_the_hanoi_story_matches_the_report() -> None:
    state = project(S, hanoi())
    assert (state.status, state.title, state.place, state.version) == (
        "concluded",
        "Second US–North Korea summit",
        "Hanoi",
        HANOI_VERSION,
    )
    lunch = state.schedule["working-lunch"]
    assert (lunch.status, lunch.reason) == (
        "cancelled",
        "Cut from the programme at the last minute",
    )
    press = state.schedule["press-conference"]
    assert press.status == "rescheduled"
    assert [s.shift for s in press.shifts] == ["-PT2H"]
    assert press.starts_at is not None
    assert press.starts_at.precision == "day"  # the report gives no clock time
    talks = state.schedule["closed-door-talks"]
    assert (talks.status, talks.ended_at) == ("ended", "2019-02-28T13:25:00+07:00")
    kim, trump = state.statements["kim-willing"], state.statements["trump-best-answer"]
    assert kim.via_interpreter is True
    assert trump.in_reply_to == "kim-willing"
    assert "best answer" in trump.text
    assert state.outcome is not None
    assert state.outcome.result == "no_agreement"
    assert state.outcome.supported_by == ("sanders-no-agreement",)
    assert {e: x.status for e, x in state.expectations.items()} == {
        "war-declaration": "unmet",
        "yongbyon-pledge": "unmet",
    }
    assert {(link.story, link.rel) for link in state.links} == {
        ("singapore-summit-2018", "prior"),
        ("cohen-hearing-2019", "distraction"),
    }
    rank = {"month": 0, "day": 1, "approximate": 2, "minute": 3, "exact": 4}
    keys = [(datetime.fromisoformat(e.time), rank[e.precision], e.version) for e in state.timeline]
    assert keys == sorted(keys)
    assert len(state.timeline) == HANOI_VERSION
    assert state.timeline[-1].time == "2019-02-28T13:25:00+07:00"  # the only exact time sorts last


def test_the_final_board_says_what_the_report_says() -> None:
    """After the story concluded, nothing on the board still waits: the summit and the
    extended bilateral meeting took place (the leaders left at 1.25pm), the lunch was
    cut, the press conference was moved up (the report says no more of it)."""
    board = {ref: item.status for ref, item in project(S, hanoi()).schedule.items()}
    assert board == {
        "summit": "ended",
        "closed-door-talks": "ended",
        "extended-bilateral-meeting": "ended",
        "working-lunch": "cancelled",
        "press-conference": "rescheduled",
    }
    state = project(S, hanoi())
    summit = state.schedule["summit"]
    assert (summit.started_at, summit.started_precision) == ("2019-02-27T00:00:00+07:00", "day")
    assert (summit.ended_at, summit.ended_precision) == ("2019-02-28T13:25:00+07:00", "minute")
    meeting = state.schedule["extended-bilateral-meeting"]
    assert (meeting.started_precision, meeting.ended_precision) == ("day", "day")


def test_live_projection_of_hanoi_equals_a_rebuild() -> None:
    records = hanoi()
    assert live(records) == project(S, records)


def test_day_precision_sorts_before_a_known_time_that_day() -> None:
    exact = update(
        "dateline.story.opened", time="2019-02-28T08:00:00+07:00", data={"title": "Exact"}
    )
    day = update(
        "dateline.story.opened",
        time="2019-02-28T00:00:00+07:00",
        timeprecision="day",
        data={"title": "Earlier that day"},
    )
    # The day-precision update arrives later, but sorts first: the exact one wins.
    assert project(S, as_logged([exact, day])).title == "Exact"


def test_later_time_wins_then_later_position() -> None:
    a = update("dateline.story.opened", time="2019-02-28T09:00:00Z", data={"title": "A"})
    b = update("dateline.story.opened", time="2019-02-28T08:00:00Z", data={"title": "B"})
    assert project(S, as_logged([a, b])).title == "A"
    c = update("dateline.story.opened", time="2019-02-28T09:00:00Z", data={"title": "C"})
    assert project(S, as_logged([a, c])).title == "C"  # a tie: the later log position


def test_a_correction_before_its_target_is_held_then_applied() -> None:
    said = update(
        "dateline.statement.made",
        id="st-1",
        data={"statement": "s1", "speaker": "Kim Jong Un", "text": "If I'm not willing to do that"},
    )
    fix = update(
        "dateline.correction.issued",
        time="2019-02-28T14:00:00+07:00",
        data={"corrects": "st-1", "changes": {"speaker_role": "Chairman"}, "note": "Role added."},
    )
    held = project(S, as_logged([fix]))
    assert held.corrections[0].applied is False
    assert held.statements == {}
    for order in ([fix, said], [said, fix]):
        state = project(S, as_logged(order))
        st = state.statements["s1"]
        assert st.speaker_role == "Chairman"
        assert st.corrected_fields == ("speaker_role",)
        assert st.correction_notes == ("Role added.",)
        assert [c.applied for c in state.corrections] == [True]


def test_corrections_keep_their_notes_in_time_order() -> None:
    target = update("dateline.story.opened", id="o1", data={"title": "Summit"})
    late = update(
        "dateline.correction.issued",
        time="2019-03-02T00:00:00Z",
        data={"corrects": "o1", "changes": {"title": "Second"}, "note": "second"},
    )
    early = update(
        "dateline.correction.issued",
        time="2019-03-01T00:00:00Z",
        data={"corrects": "o1", "changes": {"title": "First"}, "note": "first"},
    )
    state = project(S, as_logged([target, late, early]))
    assert [c.note for c in state.corrections] == ["first", "second"]
    assert state.title == "Second"


def test_a_correction_that_does_not_fit_changes_nothing_and_says_so() -> None:
    target = update("dateline.story.opened", id="o1", data={"title": "Summit"})
    bad = update(
        "dateline.correction.issued",
        data={"corrects": "o1", "changes": {"title": 5}, "note": "oops"},
    )
    state = project(S, as_logged([target, bad]))
    assert state.title == "Summit"
    assert state.corrections[0].applied is False
    assert state.corrections[0].problem


@pytest.mark.parametrize(
    ("events", "visible"),
    [
        (["withheld"], False),
        (["withheld", "lifted"], True),
        (["canceled"], False),
        (["canceled", "lifted"], False),  # a recalled update does not come back
    ],
)
def test_retractions(events: list[str], visible: bool) -> None:
    target = update(
        "dateline.outcome.reported",
        id="out-1",
        data={"outcome": "o", "result": "agreement_signed", "summary": "Signed"},
    )
    docs = [target]
    for n, event in enumerate(events):
        t = f"2019-03-0{n + 1}T00:00:00Z"
        if event == "lifted":
            docs.append(update("dateline.retraction.lifted", time=t, data={"retracts": "out-1"}))
        else:
            docs.append(
                update(
                    "dateline.retraction.issued",
                    time=t,
                    data={"retracts": "out-1", "status": event, "reason": "r"},
                )
            )
    state = project(S, as_logged(docs))
    assert (state.outcome is not None) is visible
    assert ([h.id for h in state.hidden] == []) is visible
    assert len(state.timeline) == len(docs) - (0 if visible else 1)


def test_the_same_statement_from_two_sources_is_one_statement() -> None:
    a = update(
        "dateline.statement.made",
        source="urn:feed:wire-a",
        time="2019-02-28T10:00:00+07:00",
        data={
            "statement": "a1",
            "speaker": "Donald Trump",
            "text": "That might be the best answer",
        },
    )
    b = update(
        "dateline.statement.made",
        source="urn:feed:wire-b",
        time="2019-02-28T11:00:00+07:00",
        data={
            "statement": "b1",
            "speaker": "donald  trump",
            "text": "THAT might be the  best answer",
        },
    )
    other_day = update(
        "dateline.statement.made",
        source="urn:feed:wire-c",
        time="2019-03-01T10:00:00+07:00",
        data={
            "statement": "c1",
            "speaker": "Donald Trump",
            "text": "That might be the best answer",
        },
    )
    state = project(S, as_logged([b, a, other_day]))
    assert set(state.statements) == {"a1", "c1"}
    assert state.statements["a1"].sources == ("urn:feed:wire-a", "urn:feed:wire-b")
    assert state.statements["a1"].refs == ("a1", "b1")


def test_advance_refuses_what_needs_a_refold() -> None:
    first, later, earlier = as_logged(
        [
            update("dateline.story.opened", time="2019-02-28T10:00:00Z"),
            update("dateline.story.concluded", time="2019-02-28T12:00:00Z"),
            update("dateline.story.reopened", time="2019-02-28T11:00:00Z"),
        ]
    )
    state = advance(StoryState(id=S), first)
    assert state is not None
    two = advance(state, later)
    assert two is not None
    assert two.status == "concluded"
    assert advance(two, earlier) is None  # sorts before what is folded
    assert advance(state, earlier) is None  # not the next version
    fix = as_logged(
        [
            update(
                "dateline.correction.issued",
                data={"corrects": "x", "changes": {"title": "y"}, "note": "n"},
            )
        ]
    )[0]
    assert advance(StoryState(id=S), fix) is None


def test_advance_does_not_change_its_input() -> None:
    [first] = as_logged([update()])
    empty = StoryState(id=S)
    advance(empty, first)
    assert empty == StoryState(id=S)


def test_state_round_trips_as_json() -> None:
    state = project(S, hanoi())
    assert msgspec.json.decode(msgspec.json.encode(state), type=StoryState) == state
