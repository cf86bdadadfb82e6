"""Valid updates of every type, and a way to vary them, for tests and benchmarks."""

from __future__ import annotations

import copy
from itertools import count
from typing import Any

import msgspec

_ids = count(1)

DATA: dict[str, dict[str, Any]] = {
    "dateline.story.opened": {
        "title": "Second US–North Korea summit",
        "place": "Hanoi",
        "people": ["Donald Trump", "Kim Jong Un"],
        "tags": ["diplomacy"],
    },
    "dateline.story.linked": {"story": "singapore-summit-2018", "rel": "prior", "note": "June"},
    "dateline.story.concluded": {"summary": "Ended without agreement."},
    "dateline.story.reopened": {"reason": "Talks resume."},
    "dateline.schedule.announced": {
        "item": "press-conference",
        "title": "Press conference",
        "starts_at": "2019-02-28T16:00:00+07:00",
        "ends_at": "2019-02-28",
        "location": "Hanoi",
        "participants": ["Donald Trump"],
        "parent": "summit",
    },
    "dateline.schedule.rescheduled": {"item": "press-conference", "shift": "-PT2H"},
    "dateline.schedule.postponed": {"item": "working-lunch", "reason": "Talks overran"},
    "dateline.schedule.cancelled": {"item": "working-lunch", "reason": "Cut at the last minute"},
    "dateline.schedule.reinstated": {"item": "working-lunch", "starts_at": "2019-02"},
    "dateline.schedule.relocated": {"item": "summit", "location": "Metropole hotel"},
    "dateline.schedule.started": {"item": "summit"},
    "dateline.schedule.ended": {"item": "summit", "early": True},
    "dateline.statement.made": {
        "statement": "kim-willing",
        "speaker": "Kim Jong Un",
        "text": "If I’m not willing to do that, I won’t be here right now",
        "speaker_role": "Leader of North Korea",
        "language": "en",
        "via_interpreter": True,
        "in_reply_to": "q1",
        "context": "Asked about nuclear weapons",
        "medium": "remarks",
    },
    "dateline.outcome.reported": {
        "outcome": "o1",
        "result": "no_agreement",
        "summary": "No agreement was reached",
        "parties": ["United States", "North Korea"],
        "supported_by": ["sanders-1"],
    },
    "dateline.expectation.raised": {"expectation": "yongbyon", "description": "A pledge"},
    "dateline.expectation.resolved": {"expectation": "yongbyon", "status": "unmet", "note": "No"},
    "dateline.correction.issued": {
        "corrects": "wire-a-0001",
        "changes": {"title": "Corrected title"},
        "note": "An earlier version misnamed the summit.",
        "kind": "correction",
    },
    "dateline.retraction.issued": {
        "retracts": "wire-a-0002",
        "status": "withheld",
        "reason": "Unconfirmed",
    },
    "dateline.retraction.lifted": {"retracts": "wire-a-0002"},
}


def update(
    type_: str = "dateline.story.opened",
    *,
    subject: str = "hanoi-summit-2019",
    data: object = None,
    **attrs: Any,
) -> dict[str, Any]:
    """A valid update of `type_` as a JSON-ready dict; keyword arguments override attributes."""
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"test-{next(_ids):06d}",
        "source": "urn:feed:test",
        "type": type_,
        "subject": subject,
        "time": "2019-02-28T13:25:00+07:00",
        "data": copy.deepcopy(DATA[type_]) if data is None else data,
    }
    doc.update(attrs)
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    return msgspec.json.encode(doc)
