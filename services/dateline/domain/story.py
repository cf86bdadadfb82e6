"""A story's state as a function of the *set* of its updates (the contract's derivation rules).

`project(story, updates)` is the definition: sort by (time, precision, version),
apply each correction to its target and drop retracted updates, over the whole
set, then fold `evolve`. Any arrival order of the same updates gives the same
state. `advance(state, update)` is the fast path for the usual case, an update
that sorts after everything folded so far and names no other update; it answers
None when only a refold from the story's history can be right.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, cast

import msgspec

from dateline.domain.evolve import evolve
from dateline.domain.order import order_key
from dateline.domain.state import CorrectionNote, Entry, Hidden, StoryState
from dateline.domain.summary import summarize
from dateline_schemas import Update
from dateline_schemas.correction import CorrectionIssued, RetractionIssued, RetractionLifted
from dateline_schemas.statement import StatementMade

_copy_encode = msgspec.msgpack.Encoder().encode
_copy_decode = msgspec.msgpack.Decoder(StoryState).decode
_NAMING = (CorrectionIssued, RetractionIssued, RetractionLifted)


def project(story: str, updates: Iterable[Update]) -> StoryState:
    """The state of `story` from its updates, in any order, duplicates (same version) once."""
    by_version = {u.version: u for u in updates if u.subject == story}
    keyed = sorted(((order_key(u), u) for u in by_version.values()), key=_first)
    ordered = [u for _, u in keyed]
    hidden = _retracted(ordered)
    present = {u.id: u for u in ordered}
    issued = {u.id: u for u in ordered if isinstance(u, CorrectionIssued) and u.id not in hidden}
    notes = {cid: _note(c, present.get(c.data.corrects), hidden) for cid, c in issued.items()}
    effective = _effective(issued, notes)
    corrections: dict[str, list[CorrectionIssued]] = defaultdict(list)
    for cid in issued:  # in the order of their time; none that cannot apply
        if notes[cid].applied:
            corrections[effective[cid].data.corrects].append(effective[cid])

    state = StoryState(id=story)
    state.hidden = sorted(hidden.values(), key=lambda h: h.id)
    state.corrections = list(notes.values())  # in the order of their time
    for key, u in keyed:
        if u.id in hidden:
            continue
        if u.id in effective:  # a correction, as corrected; its own changes went to its note
            _fold(state, effective[u.id], key)
            continue
        fixed, fields, texts = _corrected(u, corrections.get(u.id, []), notes)
        _fold(state, fixed, key)  # a correction changes data, never the time: same key
        if fields and isinstance(fixed, StatementMade):
            ref = state.statement_aliases.get(fixed.data.statement, fixed.data.statement)
            if said := state.statements.get(ref):
                said.corrected_fields = sorted({*said.corrected_fields, *fields})
                said.correction_notes += texts
    _stamp_latest(state, by_version.values())
    return state


def advance(state: StoryState, update: Update) -> StoryState | None:
    """`state` with `update` folded in, or None if the update needs a refold.

    None when the update is not the next version, names another update
    (correction, retraction), is named by one already folded (held), or sorts
    before what is folded already (it arrived out of order).
    """
    if not _appendable(state, update, order_key(update)):
        return None
    new = copy_state(state)
    advance_in_place(new, update)
    return new


def advance_in_place(state: StoryState, update: Update) -> bool:
    """`advance` on a state the caller owns (a copy of its own): False means refold.

    For the projector, which copies a story's state once per batch, not per update.
    """
    key = order_key(update)
    if not _appendable(state, update, key):
        return False
    _fold(state, update, key)
    _stamp_latest(state, [update])
    return True


def _appendable(state: StoryState, update: Update, key: list[Any]) -> bool:
    if update.version != state.version + 1 or isinstance(update, _NAMING):
        return False
    if any(c.corrects == update.id for c in state.corrections):
        return False  # a correction was held for it
    if any(h.id == update.id for h in state.hidden):
        return False  # retracted before it arrived
    return not state.order_key or key > state.order_key


def copy_state(state: StoryState) -> StoryState:
    return _copy_decode(_copy_encode(state))


def _fold(state: StoryState, update: Update, key: list[Any]) -> None:
    time = update.time.isoformat()
    evolve(state, update, time)
    state.order_key = key
    state.last_time = time
    state.timeline.append(
        Entry(
            version=update.version or 0,
            id=update.id,
            type=update.__struct_config__.tag,  # type: ignore[arg-type]
            time=time,
            precision=update.timeprecision,
            summary=summarize(update),
            source=update.source,
        )
    )


def _first(pair: tuple[list[Any], Update]) -> list[Any]:
    return pair[0]


def _stamp_latest(state: StoryState, updates: Iterable[Update]) -> None:
    latest = max(updates, key=lambda u: u.version or 0, default=None)
    if latest is not None and (latest.version or 0) >= state.version:
        state.version = latest.version or 0
        state.position = latest.position
        state.recordedtime = latest.recordedtime.isoformat() if latest.recordedtime else None


def _retracted(ordered: list[Update]) -> dict[str, Hidden]:
    """Ids taken out of the state: the last retraction event of each target decides.

    A lifted retraction restores a withheld update; a canceled one stays out.
    """
    hidden: dict[str, Hidden] = {}
    for u in ordered:
        match u:
            case RetractionIssued(data=d):
                hidden[d.retracts] = Hidden(d.retracts, d.status, d.reason, u.id)
            case RetractionLifted(data=d):
                if d.retracts in hidden and hidden[d.retracts].status == "withheld":
                    del hidden[d.retracts]
    return hidden


def _note(
    correction: CorrectionIssued, target: Update | None, hidden: dict[str, Hidden]
) -> CorrectionNote:
    """The correction's note; not applied while its target has not arrived (held), nor
    when the target is out of the state or is no update whose data a change can fix."""
    d = correction.data
    note = CorrectionNote(
        id=correction.id,
        corrects=d.corrects,
        note=d.note,
        time=correction.time.isoformat(),
        kind=d.kind or "correction",
        fields=sorted(d.changes),
        applied=target is not None,
    )
    if target is None:
        return note
    if d.corrects in hidden:
        note.applied = False
        note.problem = (
            f"the update it corrects is retracted ({hidden[d.corrects].status}): "
            "a correction of it changes nothing"
        )
    elif isinstance(target, RetractionIssued | RetractionLifted):
        note.applied = False
        note.problem = (
            "a retraction is not corrected: issue another retraction, or lift it "
            "(dateline.retraction.lifted)"
        )
    elif isinstance(target, CorrectionIssued) and {"corrects"} & set(d.changes):
        note.applied = False
        note.problem = (
            "a correction of a correction may change its changes, note or kind, not "
            "which update it corrects: issue a new correction of that update"
        )
    return note


def _effective(
    issued: dict[str, CorrectionIssued], notes: dict[str, CorrectionNote]
) -> dict[str, CorrectionIssued]:
    """Each correction as the corrections of it left it (a correction is an update, and
    `corrects` may name one), in any depth; the notes say what each changed.

    A correction of a correction changes what the first one does to its own target:
    its `changes`, `note` or `kind`. `fields` and `note` of the first note follow.
    """
    of: dict[str, list[str]] = defaultdict(list)
    for cid, c in issued.items():
        of[c.data.corrects].append(cid)
    done: dict[str, CorrectionIssued] = {}

    def resolve(cid: str, path: frozenset[str]) -> CorrectionIssued:
        if cid in done:
            return done[cid]
        fixes = [
            resolve(f, path | {cid})
            for f in of.get(cid, [])
            if f not in path and f != cid and notes[f].applied
        ]
        fixed = cast(CorrectionIssued, _corrected(issued[cid], fixes, notes)[0])
        if fixes:
            note = notes[cid]
            note.note, note.kind = fixed.data.note, fixed.data.kind or "correction"
            note.fields = sorted(fixed.data.changes)
        done[cid] = fixed
        return fixed

    for cid in issued:
        resolve(cid, frozenset())
    return done


def _corrected(
    update: Update, fixes: list[CorrectionIssued], notes: dict[str, CorrectionNote]
) -> tuple[Update, list[str], list[str]]:
    """`update` with every correction naming it applied in time order; fields and notes used.

    A correction whose change does not fit the update's type (a field it lacks, a
    value of the wrong type) changes nothing, and its note says so.
    """
    if not fixes:
        return update, [], []
    data: dict[str, Any] = msgspec.to_builtins(update.data)
    fields: list[str] = []
    texts: list[str] = []
    for fix in fixes:
        trial = {**data, **fix.data.changes}
        try:
            msgspec.convert(trial, type(update.data))
        except (msgspec.ValidationError, ValueError) as exc:
            notes[fix.id].applied = False
            notes[fix.id].problem = str(exc)
            continue
        data = trial
        fields += [f for f in fix.data.changes if f not in fields]
        texts.append(fix.data.note)
    new_data = msgspec.convert(data, type(update.data))
    return msgspec.structs.replace(update, data=new_data), fields, texts
