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
from collections.abc import Iterable, Mapping
from operator import itemgetter
from types import MappingProxyType
from typing import Any, NamedTuple, cast, get_origin

import msgspec
from msgspec.structs import replace

from dateline.domain.evolve import ARMS, Arm, Written
from dateline.domain.instants import iso_text
from dateline.domain.order import order_key
from dateline.domain.state import CorrectionNote, Entry, Hidden, StoryState
from dateline.domain.summary import LINES, Line
from dateline_schemas import Update
from dateline_schemas.correction import (
    CorrectionIssued,
    Naming,
    RetractionIssued,
    RetractionLifted,
    target_of,
)
from dateline_schemas.statement import StatementMade

_copy_encode = msgspec.msgpack.Encoder().encode
_copy_decode = msgspec.msgpack.Decoder(StoryState).decode
_NAMING = (CorrectionIssued, RetractionIssued, RetractionLifted)
_NAMING_KINDS = frozenset(_NAMING)


def project(story: str, updates: Iterable[Update]) -> StoryState:
    """The state of `story` from its updates, in any order, duplicates (same version) once."""
    by_version = {u.version: u for u in updates if u.subject == story}
    keyed = [(order_key(u), u) for u in by_version.values()]
    keyed.sort(key=_first)
    # The kinds at once (no update type is subclassed), not an isinstance an update.
    if _NAMING_KINDS.isdisjoint({type(u) for u in by_version.values()}):
        state = StoryState(id=story)  # nothing corrected or retracted: a plain fold
        for key, u in keyed:
            _fold(state, u, key)
        _stamp_newest(state, by_version)
        return state
    ordered = [u for _, u in keyed]
    refs = [(u.source, u.id) for u in ordered]  # each update's `_ref`, made once
    hidden = _retracted(ordered)
    present = dict(zip(refs, ordered, strict=True))
    issued = {
        ref: u
        for ref, u in zip(refs, ordered, strict=True)
        if type(u) is CorrectionIssued and ref not in hidden  # exact: `evolve.ARMS` says why
    }
    notes = {cref: _note(c, present.get(target_of(c)), hidden) for cref, c in issued.items()}
    effective = _effective(issued, notes)
    corrections: dict[Ref, list[CorrectionIssued]] = defaultdict(list)
    for cref in issued:  # in the order of their time; none that cannot apply
        if notes[cref].applied:
            corrections[target_of(effective[cref])].append(effective[cref])

    state = StoryState(id=story)
    state.hidden = tuple(sorted(hidden.values(), key=lambda h: (h.id, h.source)))
    state.corrections = tuple(notes.values())  # in the order of their time
    for (key, u), ref in zip(keyed, refs, strict=True):
        if ref in hidden:
            continue
        if ref in effective:  # a correction, as corrected; its changes went to its note
            _fold(state, effective[ref], key)
            continue
        fixes = corrections.get(ref)
        if not fixes:
            _fold(state, u, key)
            continue
        fixed, fields, texts = _corrected(u, fixes, notes)
        _fold(state, fixed, key)  # a correction changes data, never the time: same key
        if fields and isinstance(fixed, StatementMade):
            first = state.statement_aliases.get(fixed.data.statement, fixed.data.statement)
            if said := state.statements.get(first):
                said.corrected_fields = tuple(sorted({*said.corrected_fields, *fields}))
                said.correction_notes += tuple(texts)
    _stamp_newest(state, by_version)
    return state


Ref = tuple[str, str]
"""An update as corrections and retractions name it: (source, id), unique in the log."""
EMPTY: Mapping[Ref, Hidden] = MappingProxyType({})


def _ref(update: Update) -> Ref:
    return (update.source, update.id)


def counts(naming: Naming) -> bool:
    """Rule 5: a correction or retraction counts if it names an update of its own
    source, or if its writer held the editor right when the log accepted it."""
    return target_of(naming)[0] == naming.source or bool(naming.editor)


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


def advance_in_place(state: StoryState, update: Update, said: list[Written] | None = None) -> bool:
    """`advance` on a state the caller owns (a copy of its own, or a `fork` with its
    `Journal`'s `said`): False means refold.

    For the projector, which copies a story's state once per batch, not per update. A
    statement it writes goes on `said`, with what it replaced, as soon as it is written.
    """
    key = order_key(update)
    if not _appendable(state, update, key):
        return False
    _fold(state, update, key, said)
    _stamp(state, update)  # the next version (`_appendable`): no need to find the latest
    return True


def _appendable(state: StoryState, update: Update, key: tuple[Any, ...]) -> bool:
    if update.version != state.version + 1 or type(update) in _NAMING_KINDS:
        return False
    # Most states hold no correction and hide nothing: no generator made for them.
    if state.corrections and any(
        _names(c.corrects, c.target_source, update) for c in state.corrections
    ):
        return False  # a correction was held for it
    if state.hidden and any(_names(h.id, h.source, update) for h in state.hidden):
        return False  # retracted before it arrived
    return not state.order_key or key > state.order_key


def _names(update_id: str, source: str, update: Update) -> bool:
    """Whether (source, update_id) is `update`; "" (a state folded before rule 5) is any."""
    return update_id == update.id and source in ("", update.source)


def copy_state(state: StoryState) -> StoryState:
    return _copy_decode(_copy_encode(state))


_SHARED = ("statements", "statement_keys")
"""What a fork shares with the state it came from: the two that grow with the story."""
_CONTAINERS = tuple(
    f.name
    for f in msgspec.structs.fields(StoryState)
    if get_origin(f.type) in (list, dict) and f.name not in _SHARED
)
"""The state's other lists and dicts: what `fork` copies (a field added later is among
them). Its tuples it shares: nothing changes one in place, `evolve` sets a new one."""


class Journal(msgspec.Struct, gc=False):
    """What a fold in place wrote into the statements and merge keys that a `fork`
    shares with the state it came from: enough to undo it (`unfold`), and for a commit
    to write what changed without that state's copies."""

    statements: int
    """How many statements the state held before."""
    keys: int
    """How many merge keys it held before (a fold only adds them, at the end)."""
    said: list[Written] = msgspec.field(default_factory=list)
    """Each statement written, in order, with the one it replaced."""


def fork(state: StoryState) -> tuple[StoryState, Journal]:
    """A state to fold in place, and the journal to fold it with (`advance_in_place`'s
    `said`). Its containers are its own, what they hold is shared (`evolve` replaces
    what it changes, never changes it in place), but for its statements and merge keys:
    those it shares with `state`, so that a story of hundreds of statements is not
    copied every batch. A fold writes them in place, and `state` holds what the fold
    wrote until `unfold` undoes it from the journal."""
    forked = replace(state, **{name: getattr(state, name).copy() for name in _CONTAINERS})
    return forked, Journal(len(state.statements), len(state.statement_keys))


def unfold(state: StoryState, journal: Journal) -> None:
    """Undo what a fold in place wrote into the statements and merge keys `state`
    shares: each statement back as it was, last first, and the merge keys past the old
    ones dropped. The dicts are then as they were, in their order."""
    statements, keys = state.statements, state.statement_keys
    for ref, was in reversed(journal.said):
        if was is None:
            del statements[ref]
        else:
            statements[ref] = was
    while len(keys) > journal.keys:
        keys.popitem()
    journal.said.clear()


def _fold(
    state: StoryState, update: Update, key: tuple[Any, ...], said: list[Written] | None = None
) -> None:
    time = iso_text(update.time)
    # The arm and the line from their tables here, not through `evolve` and `summarize`:
    # two calls fewer an update, 1.7% of the fold alone's instructions (callgrind).
    arm, line, tag = _KINDS[type(update)]
    written = arm(state, update, time)
    if written is not None and said is not None:
        said.append(written)  # before anything else can fail
    state.order_key = key
    state.last_time = time
    state.timeline.append(
        Entry(
            version=update.version or 0,
            id=update.id,
            type=tag,
            time=time,
            precision=update.timeprecision,
            summary=line(update),
            source=update.source,
        )
    )


_KINDS: dict[type[Any], tuple[Arm, Line, str]] = {
    kind: (arm, LINES[kind], kind.__struct_config__.tag) for kind, arm in ARMS.items()
}
"""An update type's arm, timeline line and type name, in one lookup: `__struct_config__`
makes a new object each time it is read."""

_first = itemgetter(0)
"""The sort key of an (order key, update) pair: in C, not a call into Python a pair."""


def _stamp_latest(state: StoryState, updates: Iterable[Update]) -> None:
    latest = max(updates, key=lambda u: u.version or 0, default=None)
    if latest is not None and (latest.version or 0) >= state.version:
        _stamp(state, latest)


def _stamp_newest(state: StoryState, by_version: dict[int | None, Update]) -> None:
    """`_stamp_latest` of updates keyed by their versions: the greatest key, found in C.
    Updates not in the log yet (no version, in tests) go the long way."""
    if None in by_version or not by_version:
        _stamp_latest(state, by_version.values())
        return
    latest = by_version[max(cast(Iterable[int], by_version))]
    if (latest.version or 0) >= state.version:
        _stamp(state, latest)


def _stamp(state: StoryState, latest: Update) -> None:
    """The state's version, position and recorded time are those of `latest`."""
    state.version = latest.version or 0
    state.position = latest.position
    state.recordedtime = iso_text(latest.recordedtime) if latest.recordedtime else None


def recalled(updates: Iterable[Update], known: Mapping[Ref, Hidden] = EMPTY) -> dict[Ref, Hidden]:
    """The updates recalled as erroneous (retracted `canceled`, rule 5 met), by
    (source, id): what a reader without the audit right sees with no content. With them,
    the corrections of such an update (their changes carry what was recalled). `known`:
    those found in the story's earlier updates, for a caller that reads them one by one."""
    ordered = [u for _, u in sorted(((order_key(u), u) for u in updates), key=_first)]
    gone = dict(known)
    gone |= {ref: h for ref, h in _retracted(ordered).items() if h.status == "canceled"}
    corrections = {_ref(u): target_of(u) for u in ordered if isinstance(u, CorrectionIssued)}
    pending = _naming_the_gone(corrections, set(gone))
    while pending:  # each with the retraction that recalled what it names, in any depth
        before = len(pending)
        for ref in sorted(pending):
            named = corrections[ref]
            by = gone.get(named) or next(
                (h for (s, i), h in gone.items() if i == named[1] and not s), None
            )
            if by is not None:
                reason = "corrects a recalled update"
                gone[ref] = Hidden(ref[1], "canceled", reason, by.retraction, ref[0])
                pending.discard(ref)
        if len(pending) == before:  # cannot be: each names the gone or one resolved
            break
    return gone


def recalled_corrections(notes: Iterable[CorrectionNote], hidden: Iterable[Hidden]) -> set[Ref]:
    """The corrections (source, id) in a state that name an update recalled as erroneous,
    or such a correction: their changes and notes carry what was recalled."""
    gone = {(h.source, h.id) for h in hidden if h.status == "canceled"}
    return _naming_the_gone({(n.source, n.id): (n.target_source, n.corrects) for n in notes}, gone)


def _naming_the_gone(corrections: dict[Ref, Ref], gone: set[Ref]) -> set[Ref]:
    """Of `corrections` (ref -> the ref it names), those that name one in `gone`, or one
    of themselves (a correction of such a correction), in any depth. A ref of source ""
    (folded before rule 5) is any source's."""
    anyone = {ref[1] for ref in gone if not ref[0]}
    found: set[Ref] = set()
    grew = True
    while grew:
        grew = False
        for ref, (source, named) in corrections.items():
            if ref in found:
                continue
            if (source, named) in gone or (source, named) in found or named in anyone:
                found.add(ref)
                grew = True
    return found


def project_for_reader(story: str, updates: list[Update], gone: dict[Ref, Hidden]) -> StoryState:
    """The state folded from `updates` without those in `gone` (recalled since), each
    listed as hidden instead: as of any moment, a recalled update's content stays out."""
    state = project(story, [u for u in updates if _ref(u) not in gone])
    hidden = {(h.source, h.id): h for h in state.hidden}
    for u in updates:
        ref = _ref(u)
        if isinstance(u, CorrectionIssued) and target_of(u) in gone:
            continue  # left out with what it corrects, not listed as retracted itself
        if ref in gone:
            hidden.setdefault(ref, gone[ref])
    state.hidden = tuple(sorted(hidden.values(), key=lambda h: (h.id, h.source)))
    _stamp_latest(state, updates)  # the version folded is every update's, those left out too
    return state


def _retracted(ordered: list[Update]) -> dict[Ref, Hidden]:
    """Updates taken out of the state: the last retraction event of each target decides.

    A lifted retraction restores a withheld update; a canceled one stays out. A
    retraction or lift that rule 5 does not let count changes nothing.
    """
    hidden: dict[Ref, Hidden] = {}
    for u in ordered:  # by exact type, as `evolve.ARMS`: most are neither
        if type(u) is RetractionIssued and counts(u):
            target, d = target_of(u), u.data
            hidden[target] = Hidden(d.retracts, d.status, d.reason, u.id, target[0])
        elif type(u) is RetractionLifted and counts(u):
            target = target_of(u)
            if target in hidden and hidden[target].status == "withheld":
                del hidden[target]
    return hidden


def _note(
    correction: CorrectionIssued, target: Update | None, hidden: dict[Ref, Hidden]
) -> CorrectionNote:
    """The correction's note; not applied while its target has not arrived (held), nor
    when rule 5 does not let it count, the target is out of the state, or is no update
    whose data a change can fix."""
    d = correction.data
    named = target_of(correction)
    note = CorrectionNote(
        id=correction.id,
        corrects=d.corrects,
        note=d.note,
        time=iso_text(correction.time),
        kind=d.kind or "correction",
        fields=tuple(sorted(d.changes)),
        applied=target is not None,
        source=correction.source,
        target_source=named[0],
    )
    if not counts(correction):
        note.applied = False
        note.problem = (
            f"rule 5: {correction.source!r} may correct only its own updates; this one "
            f"names {named[0]!r}'s, and its writer did not hold the editor right"
        )
        return note
    if target is None:
        return note
    if named in hidden:
        note.applied = False
        note.problem = (
            f"the update it corrects is retracted ({hidden[named].status}): "
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
    issued: dict[Ref, CorrectionIssued], notes: dict[Ref, CorrectionNote]
) -> dict[Ref, CorrectionIssued]:
    """Each correction as the corrections of it left it (a correction is an update, and
    `corrects` may name one), in any depth; the notes say what each changed.

    A correction of a correction changes what the first one does to its own target:
    its `changes`, `note` or `kind`. `fields` and `note` of the first note follow.
    """
    of: dict[Ref, list[Ref]] = defaultdict(list)
    for cid, c in issued.items():
        of[target_of(c)].append(cid)
    done: dict[Ref, CorrectionIssued] = {}
    resolving = _Resolving(issued, notes, of, done)
    for cid in issued:
        _resolve(cid, frozenset(), resolving)
    return done


class _Resolving(NamedTuple):
    """What `_resolve` reads and fills. Passed, not closed over: a nested function that
    calls itself is a reference cycle, and a story with a correction left one for the
    collector (about 15 objects, the notes and the maps with them) every fold."""

    issued: dict[Ref, CorrectionIssued]
    notes: dict[Ref, CorrectionNote]
    of: dict[Ref, list[Ref]]
    done: dict[Ref, CorrectionIssued]


def _resolve(cid: Ref, path: frozenset[Ref], r: _Resolving) -> CorrectionIssued:
    if cid in r.done:
        return r.done[cid]
    fixes = [
        _resolve(f, path | {cid}, r)
        for f in r.of.get(cid, [])
        if f not in path and f != cid and r.notes[f].applied
    ]
    fixed = cast(CorrectionIssued, _corrected(r.issued[cid], fixes, r.notes)[0])
    if fixes:
        note = r.notes[cid]
        note.note, note.kind = fixed.data.note, fixed.data.kind or "correction"
        note.fields = tuple(sorted(fixed.data.changes))
    r.done[cid] = fixed
    return fixed


def _corrected(
    update: Update, fixes: list[CorrectionIssued], notes: dict[Ref, CorrectionNote]
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
            notes[_ref(fix)].applied = False
            notes[_ref(fix)].problem = str(exc)
            continue
        data = trial
        fields += [f for f in fix.data.changes if f not in fields]
        texts.append(fix.data.note)
    new_data = msgspec.convert(data, type(update.data))
    return msgspec.structs.replace(update, data=new_data), fields, texts
