"""Property: the state is a function of the set of updates, not of their arrival order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from dateline.domain import project
from tests.factories import update
from tests.projection_helpers import as_logged
from tests.unit.test_projection import S, live

BASE = datetime(2019, 2, 27, 8, 0, tzinfo=UTC)
KINDS = [
    "opened",
    "concluded",
    "reopened",
    "linked",
    "announced",
    "moved",
    "shifted",
    "cancelled",
    "postponed",
    "reinstated",
    "relocated",
    "started",
    "ended",
    "said",
    "outcome",
    "raised",
    "resolved",
    "correction",
    "bad-correction",
    "withheld",
    "canceled",
    "lifted",
    # Issue 21: day starts moved by whole days, corrections of corrections, day times
    # whose clock digits must not count.
    "announced-day",
    "day-shifted",
    "meta-correction",
    "day-opened",
]


def doc(kind: str, i: int, ref: str, source: str, target: int) -> dict[str, Any]:
    # Distinct instants, so no two updates tie: a tie is decided by log position,
    # which is arrival order by definition (tested separately).
    time = (BASE + timedelta(minutes=53 * i)).isoformat()
    common = {"id": f"u{i}", "time": time, "source": source}
    item = {"item": ref}
    by_kind: dict[str, dict[str, Any]] = {
        "opened": {"title": f"Title {i}", "place": "Hanoi"},
        "concluded": {"summary": "Over"},
        "reopened": {"reason": "Back"},
        "linked": {"story": f"story-{ref}", "rel": "related"},
        "announced": {**item, "title": f"Item {ref}", "starts_at": time},
        "moved": {**item, "starts_at": "2019-03-01T10:00:00+07:00"},
        "shifted": {**item, "shift": "-PT2H"},
        "cancelled": {**item, "reason": "Cut"},
        "postponed": item,
        "reinstated": item,
        "relocated": {**item, "location": f"Room {i}"},
        "started": item,
        "ended": {**item, "early": True},
        "said": {
            "statement": f"st-{i}",
            "speaker": "Kim Jong Un",
            "text": ["I would not be here", "I WOULD  not be here"][i % 2],
        },
        "restated": {  # the same statement again, its words or speaker changed in place
            "statement": f"st-{ref}",
            "speaker": ["Kim Jong Un", "Donald Trump"][i % 2],
            "text": f"Said again {i // 2}",
        },
        "outcome": {"outcome": "o", "result": "no_agreement", "summary": f"Outcome {i}"},
        "raised": {"expectation": ref, "description": f"Hope {i}"},
        "resolved": {"expectation": ref, "status": "unmet"},
        "correction": {
            "corrects": f"u{target}",
            "changes": {"title": f"Fixed {i}"},
            "note": f"n{i}",
        },
        "bad-correction": {
            "corrects": f"u{target}",
            "changes": {"item": "no such field?"},
            "note": f"bad {i}",
        },
        "withheld": {"retracts": f"u{target}", "status": "withheld", "reason": "check"},
        "canceled": {"retracts": f"u{target}", "status": "canceled", "reason": "wrong"},
        "lifted": {"retracts": f"u{target}"},
        "announced-day": {**item, "title": f"Item {ref}", "starts_at": f"2019-03-0{i % 9 + 1}"},
        "day-shifted": {**item, "shift": ["P1D", "-P1W", "PT3H"][i % 3]},
        "meta-correction": {
            "corrects": f"u{target}",
            "changes": {"changes": {"title": f"Refixed {i}"}, "note": f"re {i}"},
            "note": f"m{i}",
        },
        "day-opened": {"title": f"Day title {i}"},
    }
    data = by_kind[kind]
    type_ = {
        "opened": "story.opened",
        "concluded": "story.concluded",
        "reopened": "story.reopened",
        "linked": "story.linked",
        "announced": "schedule.announced",
        "moved": "schedule.rescheduled",
        "shifted": "schedule.rescheduled",
        "cancelled": "schedule.cancelled",
        "postponed": "schedule.postponed",
        "reinstated": "schedule.reinstated",
        "relocated": "schedule.relocated",
        "started": "schedule.started",
        "ended": "schedule.ended",
        "said": "statement.made",
        "restated": "statement.made",
        "outcome": "outcome.reported",
        "raised": "expectation.raised",
        "resolved": "expectation.resolved",
        "correction": "correction.issued",
        "bad-correction": "correction.issued",
        "withheld": "retraction.issued",
        "canceled": "retraction.issued",
        "lifted": "retraction.lifted",
        "announced-day": "schedule.announced",
        "day-shifted": "schedule.rescheduled",
        "meta-correction": "correction.issued",
        "day-opened": "story.opened",
    }[kind]
    if kind == "day-opened":  # late on a day of its own: read as an instant, it sorted late
        common["timeprecision"] = "day"
        common["time"] = (BASE + timedelta(days=i)).replace(hour=23, minute=59).isoformat()
    return update(f"dateline.{type_}", data=data, **common)


events = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["urn:feed:wire-a", "urn:feed:wire-b"]),
        st.integers(-3, 3),  # what a correction or retraction names, relative: before or after
    ),
    min_size=1,
    max_size=14,
)


def comparable(state: Any) -> Any:
    """The state without what arrival order decides by definition: version numbers."""
    doc = msgspec.to_builtins(state)
    for key in ("position", "recordedtime", "order_key"):
        doc.pop(key)
    for entry in doc["timeline"]:
        entry.pop("version")
    return doc


@settings(max_examples=300, deadline=None)
@given(events=events, data=st.data())
def test_any_arrival_order_gives_the_same_state(
    events: list[tuple[str, str, str, int]], data: st.DataObject
) -> None:
    docs = [
        doc(kind, i, ref, source, i + offset)
        for i, (kind, ref, source, offset) in enumerate(events)
    ]
    first = project(S, as_logged(docs))
    for _ in range(3):
        shuffled = data.draw(st.permutations(docs))
        records = as_logged(shuffled)
        state = project(S, records)
        assert comparable(state) == comparable(first)
        assert live(records) == state  # live projection equals a full rebuild, exactly
