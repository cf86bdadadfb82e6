"""The batch plan: what one batch does to each of its stories. Pure: no I/O.

For each story of a batch, in log order: fold what can be folded in place, skip what
was applied already (a redelivery), and note where a refold from the story's history
must start (an update that arrived late, or one the in-place fold cannot take). The
first update that fails stops its story there: it and the story's later updates are
left unacknowledged, for the runner to retry and then park. The handler reads the
histories the plan asks for, `refold`s, and commits what the plans say.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

import msgspec

from dateline.domain import Journal, unfold
from dateline.domain.evolve import Written
from dateline.domain.state import StoryState
from dateline.store.deadletters import Delivery
from dateline_schemas import Update, decode_record, decode_records

Advance = Callable[[StoryState, Update, list[Written]], bool]
"""Fold an update into a state the handler owns, in place; False if it needs a refold.
A statement it writes goes on the list, with what it replaced (`advance_in_place`)."""
Project = Callable[[str, list[Update]], StoryState]
"""Fold a story's whole history into its state."""
Open = Callable[[Delivery], bytes]
"""A delivery's record as the append function wrote it; raises if it did not
(`Sealing.entry`)."""
OpenHistory = Callable[[str, list[bytes]], list[bytes]]
"""A story's history records, each opened likewise (`Sealing.listed_all`)."""


as_stored: Callable[[Delivery], bytes] = attrgetter("raw")
"""A delivery's record as the log holds it (an unsealed log's): in C, a call an update."""


def history_as_stored(story: str, records: list[bytes]) -> list[bytes]:
    return records


class StoryPlan(msgspec.Struct):
    """One story's part of a batch. (A Struct: made a story a cycle, in C.)"""

    story: str
    old: StoryState
    """The state as stored before the batch (what the commit writes from). Its
    statements and merge keys are those of `state` while it is folded in place (`fork`):
    `journal` says what they were."""
    state: StoryState
    """The state after the batch, as far as it is folded."""
    journal: Journal
    """The statements the fold in place wrote, with those they replaced: what the commit
    writes of the story's statements and merge keys (unless it refolds)."""
    acked: list[Delivery] = msgspec.field(default_factory=list)
    """The deliveries to acknowledge: applied, or seen already."""
    changed: bool = False
    refolded: bool = False
    """The state holds its whole timeline (refolded), not only entries to append."""
    refold_to: int = 0
    """Fold the history up to this version, once, after the pass (0: no refold)."""
    refold_at: int = 0
    """Index in `acked` of the update that called for the refold."""
    applied_to: int = 0
    """The last version folded in place, cleanly."""
    failed: Delivery | None = None
    error: BaseException | None = None


def plan(
    story: str,
    old: StoryState,
    forked: tuple[StoryState, Journal],
    items: list[Delivery],
    advance: Advance,
    open_: Open = as_stored,
) -> StoryPlan:
    """Fold `items` (the story's deliveries, in log order) into a `fork` of `old`, with
    its journal. A record `open_` refuses fails like one that does not fold: retried,
    then parked with the reason. What it folded in place and will not commit is undone
    (`unfold`), here or by `refold`: `old` is then as it was."""
    p = StoryPlan(story, old, *forked)
    try:
        _fold_in_place(p, items, advance, open_)
    finally:
        if not p.changed:  # nothing to commit, but a write an update made before failing
            unfold(p.old, p.journal)
    return p


def _fold_in_place(p: StoryPlan, items: list[Delivery], advance: Advance, open_: Open) -> None:
    for d in items:
        try:
            update = decode_record(open_(d))
            version = update.version or 0
            if p.refold_to:
                p.refold_to = max(p.refold_to, version)
            elif version <= p.state.version:
                pass  # redelivered: applied already
            elif version == p.state.version + 1 and advance(p.state, update, p.journal.said):
                p.changed, p.applied_to = True, version
            else:
                p.refold_to, p.refold_at = version, len(p.acked)
        except Exception as exc:  # the runner retries, then parks it
            p.failed, p.error = d, exc
            if p.changed and not p.refold_to:
                # It may have changed part of the state before raising: rebuild the
                # state as of the last update that applied cleanly, from the log.
                p.refold_to, p.refold_at = p.applied_to, len(p.acked)
            break
        p.acked.append(d)


def refold(
    p: StoryPlan,
    history: list[bytes],
    project: Project,
    open_: OpenHistory = history_as_stored,
) -> None:
    """Fold the story's history (versions 1 to `p.refold_to`) into the plan's state."""
    try:
        state = project(p.story, decode_records(open_(p.story, history)))
    except Exception as exc:
        if p.failed is None:  # the refold failed: retry from the update that asked for it
            p.failed, p.error = p.acked[p.refold_at], exc
            del p.acked[p.refold_at :]  # what was folded in place before it is committed
        else:  # no state of this story can be trusted: write none, retry all of it
            del p.acked[:]
            p.changed = False
            unfold(p.old, p.journal)
        return
    unfold(p.old, p.journal)  # the commit compares the refolded state to `old` as it was
    p.state = state
    p.changed = p.refolded = True


def failures(plans: list[StoryPlan]) -> dict[str, BaseException]:
    """The deliveries that failed, by `Delivery.ref`: the runner retries, then parks them."""
    return {p.failed.ref: p.error for p in plans if p.failed and p.error}
