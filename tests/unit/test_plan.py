"""The batch plan: what a batch does to each story, decided without Redis."""

from __future__ import annotations

import msgspec

from dateline.domain import Journal, advance_in_place, fork, project
from dateline.domain.evolve import Written
from dateline.domain.state import StoryState
from dateline.projector.plan import failures, plan, refold
from dateline.store.deadletters import Delivery
from dateline_schemas import Update
from tests.factories import update
from tests.projection_helpers import as_logged

S = "hanoi-summit-2019"


def history(n: int) -> list[Update]:
    docs = [update(subject=S)]
    docs += [update("dateline.statement.made", subject=S, data=_said(i)) for i in range(1, n)]
    return as_logged(docs)


def _said(i: int) -> dict[str, str]:
    return {"statement": f"s{i}", "speaker": "Kim Jong Un", "text": f"Words {i}"}


def deliveries(updates: list[Update]) -> list[Delivery]:
    return [Delivery(0, "log", f"{u.version}-0", S, msgspec.json.encode(u)) for u in updates]


def fresh() -> StoryState:
    return StoryState(id=S)


def forked(old: StoryState) -> tuple[StoryState, tuple[StoryState, Journal]]:
    """`plan`'s old state and its fork, as the handler passes them."""
    return old, fork(old)


def test_updates_in_order_fold_in_place() -> None:
    p = plan(S, *forked(fresh()), deliveries(history(3)), advance_in_place)
    assert (p.changed, p.refold_to, p.applied_to, len(p.acked)) == (True, 0, 3, 3)
    assert p.state.version == 3 and sorted(p.state.statements) == ["s1", "s2"]
    assert p.old.version == 0  # the state it commits from: its statements the fork's


def test_a_redelivered_update_is_acknowledged_and_not_applied_again() -> None:
    updates = history(2)
    state = project(S, updates)
    p = plan(S, *forked(state), deliveries(updates), advance_in_place)
    assert (p.changed, len(p.acked), p.state.version) == (False, 2, 2)


def test_a_gap_asks_for_one_refold_up_to_the_last_update() -> None:
    updates = history(4)
    state = project(S, updates[:1])
    late = deliveries([updates[2], updates[1], updates[3]])  # 3 before 2: a refold
    p = plan(S, *forked(state), late, advance_in_place)
    assert (p.refold_to, p.refold_at, len(p.acked)) == (4, 0, 3)
    refold(p, [msgspec.json.encode(u) for u in updates], project)
    assert (p.changed, p.refolded, p.state.version) == (True, True, 4)


def test_an_update_the_fold_cannot_take_in_place_asks_for_a_refold() -> None:
    updates = history(2)
    p = plan(
        S,
        *forked(fresh()),
        deliveries(updates),
        lambda state, u, said: u.version == 1 and advance_in_place(state, u, said),
    )
    assert (p.refold_to, p.refold_at, p.applied_to) == (2, 1, 1)


def test_a_failing_update_stops_its_story_there() -> None:
    good = deliveries(history(3))
    bad = Delivery(0, "log", "2-0", S, b'{"not": "an update"}')
    p = plan(S, *forked(fresh()), [good[0], bad, good[2]], advance_in_place)
    assert p.failed is bad and [d.entry_id for d in p.acked] == ["1-0"]
    assert p.refold_to == 1  # it may have half-changed the state: rebuild as of version 1
    assert list(failures([p])) == ["0:2-0"]


def test_a_refold_that_fails_retries_from_the_update_that_asked_for_it() -> None:
    updates = history(3)
    p = plan(S, *forked(fresh()), deliveries([updates[1], updates[2]]), advance_in_place)
    assert p.refold_to == 3

    def broken(story: str, updates: list[Update]) -> StoryState:
        raise RuntimeError("projection bug")

    refold(p, [msgspec.json.encode(u) for u in updates], broken)
    assert p.failed is not None and p.failed.entry_id == "2-0" and p.acked == []
    assert isinstance(failures([p])["0:2-0"], RuntimeError)


def test_a_refold_that_fails_after_a_failure_writes_nothing_of_the_story() -> None:
    updates = history(3)
    bad = Delivery(0, "log", "3-0", S, b"{}")
    p = plan(S, *forked(fresh()), [*deliveries(updates[:2]), bad], advance_in_place)
    assert p.changed and p.refold_to == 2

    def broken(story: str, updates: list[Update]) -> StoryState:
        raise RuntimeError("projection bug")

    refold(p, [msgspec.json.encode(u) for u in updates[:2]], broken)
    assert (p.changed, p.acked, p.failed) == (False, [], bad)


def test_what_a_plan_folded_in_place_and_does_not_commit_is_undone_in_its_old_state() -> None:
    """A fork shares its statements and merge keys with the state it came from: a plan
    that refolds, or writes nothing, leaves that state as it was, in its order."""
    updates = history(5)
    old = project(S, updates[:2])
    old.timeline = []
    before = msgspec.msgpack.encode(old)

    def not_four(state: StoryState, u: Update, said: list[Written]) -> bool:
        return u.version != 4 and advance_in_place(state, u, said)

    p = plan(S, *forked(old), deliveries(updates[2:]), not_four)
    assert (p.applied_to, p.refold_to) == (3, 5) and "s2" in old.statements  # shared
    refold(p, [msgspec.json.encode(u) for u in updates], project)
    assert msgspec.msgpack.encode(old) == before and "s4" in p.state.statements
    bad = Delivery(0, "log", "4-0", S, b"{}")
    p = plan(S, *forked(old), [*deliveries(updates[2:3]), bad], advance_in_place)
    assert p.changed and p.refold_to == 3

    def broken(story: str, updates: list[Update]) -> StoryState:
        raise RuntimeError("projection bug")

    refold(p, [msgspec.json.encode(u) for u in updates], broken)
    assert not p.changed and msgspec.msgpack.encode(old) == before
    p = plan(S, *forked(old), [bad], advance_in_place)
    assert not p.changed and msgspec.msgpack.encode(old) == before
