"""A page of the live index is made into pushes once for the streams that read it from
the same cursor through the same lens (`live._shared_pushes`). Pure: no Redis."""

from __future__ import annotations

import msgspec
import pytest

from dateline.domain.positions import Cursor, Position
from dateline.query import live
from dateline.query.live import WHOLE, Push
from dateline.query.reader import Applied
from dateline.query.scope import Lens
from dateline_schemas import Update, decode_record
from tests.projection_helpers import hanoi

START = Cursor(((0, 0),))


def page() -> Applied:
    found = []
    for u in hanoi()[:3]:
        at = Position.parse(u.position or "")
        found.append((at.id, at.partition, msgspec.json.encode(u)))
    return Applied(found, False, {})


async def test_streams_at_one_cursor_through_one_lens_share_what_a_page_makes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[bytes] = []

    def counted(raw: bytes) -> Update:
        decoded.append(raw)
        return decode_record(raw)

    monkeypatch.setattr(live, "decode_record", counted)
    shared = page()
    first: list[Push] = []
    second: list[Push] = []
    after_first = await live._shared_pushes(shared, START, WHOLE, None, first)
    after_second = await live._shared_pushes(shared, START, WHOLE, None, second)
    assert len(first) == 3 and first == second and after_first == after_second
    assert len(decoded) == 3  # for the first stream alone
    scoped: list[Push] = []
    await live._shared_pushes(shared, START, Lens(("another-",)), None, scoped)
    assert scoped == [] and len(decoded) == 6  # another lens: made anew (it sees none)
    later: list[Push] = []
    moved = Cursor(((after_first.ids[0][0], after_first.ids[0][1] - 1),))
    await live._shared_pushes(shared, moved, WHOLE, None, later)
    assert len(decoded) == 9  # another cursor: made anew
