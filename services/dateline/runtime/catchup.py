"""Whether the projection is catching up, from reports taken some seconds apart.

A status report says how far behind the projection is now; on call, at 3 a.m., the
question is whether that is shrinking and when it will be done. `pace` answers it
from two or more `Sample`s of the report (`dateline status --watch`; the operations
page draws the same from its polls, in `query/static/app.js`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import msgspec

WINDOW_S = 10.0
"""How far back `pace` looks: long enough that a poll's jitter and a projector's batch
do not swing it, short enough that a change of pace shows within it."""


class Sample(msgspec.Struct, frozen=True):
    at: float
    """When the report was read (Unix seconds)."""
    appended: int
    """Entries in the log, all partitions (its streams are never trimmed)."""
    lag: int
    """Entries past the checkpoints, all partitions."""
    exact: bool = True
    """False: `lag` is a floor (a partition's count is the entries the report read)."""
    partitions: tuple[tuple[str | None, int], ...] = ()
    """Each partition's checkpoint and lag, in order."""


class Verdict(StrEnum):
    UP_TO_DATE = "up to date"
    CATCHING_UP = "catching up"
    HOLDING = "holding"
    """Behind, and projecting about as fast as updates come."""
    FALLING_BEHIND = "falling behind"
    STALLED = "stalled"
    """Behind, and nothing projected in the window."""
    UNCOUNTED = "uncounted"
    """Behind by more than the report counts (Redis 6.2): no pace can be told."""


class Pace(msgspec.Struct, frozen=True):
    verdict: Verdict
    lag: int
    exact: bool
    appended_per_s: float
    projected_per_s: float
    seconds: float
    """The span the rates were measured over."""
    eta_s: float | None
    """While catching up: when the lag would reach 0 at this pace."""
    behind: tuple[int, ...] = ()
    """Partitions behind now."""
    partitions: int = 0
    """How many the log has (0: not told)."""
    unmoved: tuple[int, ...] = ()
    """Partitions behind at both ends of the span whose checkpoint stood still while the
    projection moved (a lease held by a process that is gone, an update retried until
    it is parked): the pace of the rest says nothing of when they will be done."""


UNMOVED_S = 5.0
"""The least span over which a partition behind that did not move is named: a projector
commits each partition it holds every cycle, a cycle a few milliseconds to a second."""


def sample(
    at: float,
    lengths: Sequence[int],
    checkpoints: Sequence[str | None],
    lags: Sequence[int],
    exact: bool,
) -> Sample:
    return Sample(at, sum(lengths), sum(lags), exact, tuple(zip(checkpoints, lags, strict=True)))


def pace(samples: Sequence[Sample], window_s: float = WINDOW_S) -> Pace | None:
    """The pace over the last `window_s` of `samples` (oldest first); None until two are
    at least a second apart. A lag that moves by no more than a twentieth of the rates
    is holding: projected about as fast as appended, within a poll's jitter and a
    projector's batch, which would otherwise read as hours to go or a slide behind."""
    if not samples:
        return None
    last = samples[-1]
    first = next((s for s in samples if last.at - s.at <= window_s), last)
    span = last.at - first.at
    if span < 1.0:
        return None
    appended = (last.appended - first.appended) / span
    projected = max(0.0, (last.appended - first.appended - (last.lag - first.lag)) / span)
    shrinking = (first.lag - last.lag) / span
    if last.lag == 0:
        verdict = Verdict.UP_TO_DATE
    elif not (first.exact and last.exact):
        verdict = Verdict.UNCOUNTED
    elif projected == 0:
        verdict = Verdict.STALLED
    elif abs(shrinking) <= max(appended, projected) / 20:
        verdict = Verdict.HOLDING
    elif shrinking > 0:
        verdict = Verdict.CATCHING_UP
    else:
        verdict = Verdict.FALLING_BEHIND
    eta = last.lag / shrinking if verdict is Verdict.CATCHING_UP else None
    unmoved: tuple[int, ...] = ()
    if span >= UNMOVED_S and verdict not in (Verdict.UP_TO_DATE, Verdict.STALLED):
        both = zip(first.partitions, last.partitions, strict=False)
        unmoved = tuple(
            p
            for p, ((was, waited), (now, lag)) in enumerate(both)
            if waited > 0 and lag > 0 and was == now  # not one that was not behind then
        )
    behind = tuple(p for p, (_, lag) in enumerate(last.partitions) if lag > 0)
    return Pace(
        verdict,
        last.lag,
        last.exact,
        appended,
        projected,
        span,
        eta,
        behind,
        len(last.partitions),
        unmoved,
    )


def described(found: Pace) -> str:
    """One line: what on call reads first."""
    line = _verdict(found)
    if found.unmoved:
        names = ", ".join(str(p) for p in found.unmoved)
        line += (
            f"; partition{'s' if len(found.unmoved) > 1 else ''} {names} behind and not "
            f"moved in {found.seconds:.0f} s"
        )
    return line


def _verdict(found: Pace) -> str:
    floor = "" if found.exact else "at least "
    rates = f"appended {found.appended_per_s:,.0f}/s, projected {found.projected_per_s:,.0f}/s"
    match found.verdict:
        case Verdict.UP_TO_DATE:
            return f"up to date; {rates}"
        case Verdict.CATCHING_UP:
            return (
                f"catching up: {floor}{found.lag:,} behind; {rates}; "
                f"about {spoken(found.eta_s or 0.0)} to go"
            )
        case Verdict.HOLDING:
            return f"holding {floor}{found.lag:,} behind: {rates}"
        case Verdict.FALLING_BEHIND:
            return f"FALLING BEHIND: {floor}{found.lag:,} behind; {rates}"
        case Verdict.UNCOUNTED:
            return (
                f"at least {found.lag:,} behind, more than the report counts (the server "
                f"does not count a group's entries: Redis 6.2); appended "
                f"{found.appended_per_s:,.0f}/s"
            )
        case Verdict.STALLED:
            return (
                f"STALLED: {floor}{found.lag:,} behind{_in(found)} and nothing projected in "
                f"{found.seconds:.0f} s; {rates}"
            )


def _in(found: Pace) -> str:
    """Which partitions, where not all of them."""
    if not found.behind or len(found.behind) == found.partitions:
        return ""
    s = "s" if len(found.behind) > 1 else ""
    return f" (partition{s} {', '.join(str(p) for p in found.behind)})"


def spoken(seconds: float) -> str:
    """`seconds` as on call reads them: 40 s, 12 min, 1.5 h."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
