"""Live pushes: a doorbell rung by the projector, and the event streams built on it.

Every event carries its log position as its SSE id, so a client that reconnects
with `Last-Event-ID` gets exactly what it missed: the streams are read back from
the log (a story's history, the partition streams), never from a buffer in this
process, so a restart of the query service loses nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NamedTuple

import msgspec
import structlog

from dateline.domain.positions import Cursor, Position
from dateline.domain.state import Hidden
from dateline.domain.story import Ref, recalled
from dateline.domain.summary import summarize
from dateline.query.cache import Kept
from dateline.query.patches import Patches
from dateline.query.reader import ONE_TRIP, Applied, Reader
from dateline.query.rendering import rendered_now
from dateline.query.scope import Lens
from dateline.query.views import (
    HeldEvent,
    UnreadableEvent,
    UpdateEvent,
)
from dateline.runtime import heap
from dateline.runtime.metrics import LIVE_CLIENTS, LIVE_PAGES
from dateline.store.connection import UNREACHABLE, described
from dateline.store.readmodels import IndexEntry
from dateline.web.problems import Refused
from dateline_schemas import Update, decode_record
from dateline_schemas.correction import CorrectionIssued

log = structlog.get_logger("dateline.query")
_encode = msgspec.json.Encoder().encode
_record = msgspec.json.Decoder(dict[str, object])
_entry = msgspec.json.Decoder(IndexEntry)
WHOLE = Lens()
KEEPALIVE_S = 15.0
HELD_CHECK_S = 1.0
"""How often the index stream reads which stories are parked (one HGETALL)."""
READ_AHEAD = 1000
"""Log entries a read of a story stream catching up: its records, for one client."""
BEHIND_PAGE = 1024
"""Log entries a page of an index stream catching up, over all its partitions. A stream
behind reads a page of its own and holds it until its client has taken it: at 1,000 a
partition, a thousand streams whose clients fell behind held up to 8,000 updates each,
raw, as pushes and on the wire."""


def behind_count(partitions: int, scripted: bool) -> int:
    """Entries a partition a page of a stream catching up: `BEHIND_PAGE` over them. Where
    a page of `ONE_TRIP` a partition would be read by the script (`Reader.scripted`),
    more than that, so that it is read with commands, not by the script that holds the
    server while it copies them (`reads.APPLIED`): pages of 64 a partition behind, by the
    script, took the p99 at 5,000 updates/s with the read models on the log's server to
    76 and 92 ms (two runs), against 35 before and 38 with commands. Elsewhere (the read
    models apart, a cluster) no floor: on a cluster of 48 partitions it made pages of
    6,144 updates, six times `BEHIND_PAGE`."""
    share = max(1, BEHIND_PAGE // partitions)
    return max(2 * ONE_TRIP, share) if scripted else share


OUTAGE_CHECK_S = 1.0
"""While the server is down, how often a live stream looks whether it is back."""


class Push(NamedTuple):
    """One Server-Sent Event. `data` is one line of JSON (msgspec writes no newlines)."""

    event: str
    data: bytes
    id: str | None

    def wire(self) -> bytes:
        ident = b"id: %s\r\n" % self.id.encode() if self.id else b""
        return b"%sevent: %s\r\ndata: %s\r\n\r\n" % (ident, self.event.encode(), self.data)


KEEPALIVE = b": keepalive\r\n\r\n"
"""What a stream sends when nothing happened for `KEEPALIVE_S`: a comment, which keeps
proxies from closing an idle connection."""


RECLAIM_AFTER = 100
"""Live streams ended since the last reclaim that make a burst worth one (`ended`)."""
RECLAIM_DELAY_S = 2.0
"""From the burst's `RECLAIM_AFTER`th end to the reclaim: the rest of it ends first."""


class LiveStreams:
    """How many live streams this process has open, against its cap; and after a burst
    of them ended (clients gone at once: a network blip, a redeploy of the dashboards),
    the memory they held given back (`runtime.heap.reclaim`)."""

    def __init__(self, limit: int, reclaim: Callable[[], tuple[int, bool]] = heap.reclaim) -> None:
        self.limit, self.open = limit, 0
        self._reclaim, self._ended = reclaim, 0
        self._due: asyncio.TimerHandle | None = None

    def ended(self) -> None:
        """A stream ended. Its client's leaving cancels it inside litestar's loop, whose
        frame, and the last page sent, a cycle of the exception keeps until a full
        collection, which an idle process never runs (`heap.reclaim`)."""
        self.open -= 1
        self._ended += 1
        if self._ended < RECLAIM_AFTER or self._due is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # finalized with no loop running (at shutdown): none due
            return
        self._due = loop.call_later(RECLAIM_DELAY_S, self._reclaimed)

    def _reclaimed(self) -> None:
        ended, self._ended, self._due = self._ended, 0, None
        started = time.perf_counter()
        collected, trimmed = self._reclaim()
        log.info(
            "memory of ended live streams reclaimed",
            streams=ended,
            collected=collected,
            trimmed=trimmed,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )

    def check(self) -> None:
        """Refuse a new stream past the cap: a 503, rather than slow every stream served.
        (A soft cap: streams count from their first write, which follows at once.)"""
        if self.open >= self.limit:
            raise Refused(
                503,
                "too-many-streams",
                "Too many live streams",
                f"this query process serves {self.limit} live streams at most "
                "(DATELINE_MAX_LIVE_STREAMS); reconnect later, or to another process",
                {"Retry-After": "5"},
            )


async def wire(
    pages: AsyncIterator[list[Push]], streams: LiveStreams | None = None
) -> AsyncIterator[bytes]:
    """The stream as the client receives it, a page to a write, counted in the
    live-clients gauge while it is open.

    A page is what one read found (the updates of a commit, say): one write and one
    chunk for all of it, not one each, which took a send through every middleware and a
    system call per event (a tenth of the query service's CPU at 1,000 updates/s).
    An empty page is a keepalive.

    A page is emptied once joined: it is the stream's own list, and the generators that
    yielded it hold it while they wait (for the client to take what was sent, for the
    next page). Held, a thousand streams behind held their last page twice over, 300
    pushes each, and grew 55 MB a second.
    """
    LIVE_CLIENTS.inc()
    if streams is not None:
        streams.open += 1
    try:
        async for page in pages:
            data = b"".join([p.wire() for p in page]) if page else KEEPALIVE
            page.clear()
            yield data
    finally:
        LIVE_CLIENTS.dec()
        if streams is not None:
            streams.ended()


async def through_outages(
    start: Callable[[str | None], AsyncIterator[list[Push]]],
    first: str | None,
    reachable: Callable[[], Awaitable[bool]],
) -> AsyncIterator[list[Push]]:
    """The stream `start(last id)` makes, kept open while the server is down: keepalives
    until it answers again, then the stream again from the last id sent, as a client
    that reconnected with `Last-Event-ID` would get it (each position once, in order)."""
    last = first
    while True:
        try:
            async for page in start(last):
                for push in page:
                    last = push.id or last
                yield page
            return
        except UNREACHABLE as exc:
            log.warning("live stream waits for Redis", error=described(exc), resume_from=last)
        while not await reachable():
            yield []
            await asyncio.sleep(OUTAGE_CHECK_S)
        log.info("live stream resumes", resume_from=last)


async def quiet() -> AsyncIterator[list[Push]]:
    """A stream of keepalives alone: a story the reader may not see, as one with none."""
    while True:
        await asyncio.sleep(KEEPALIVE_S)
        yield []


async def story_events(
    reader: Reader,
    story: str,
    last_event_id: Position | None,
    *,
    redacted: bool = False,
    lens: Lens = WHOLE,
    patches: Patches | None = None,
) -> AsyncIterator[list[Push]]:
    """`update` per update the read model has applied, then `state` (the story now), a
    page at a time; `state` alone when the story is parked or released.

    Without `last_event_id` the stream starts with the current state. `redacted` (a
    reader without the audit right): an update recalled as erroneous comes without its
    record and summary, as `recalled`, on a stream resumed from before its recall.
    `patches`: after the first state, `patch` (what changed since the state this stream
    sent last, `query/patches.py`) where it can be made, else `state` again.
    """
    recalls = Recalls(reader, resumed=last_event_id is not None) if redacted else None
    states = _States(lens, patches)
    sent = None if last_event_id is not None else -1  # versions pushed so far; -1: none yet
    seen = last_event_id  # on a resumed stream, what the client had: skipped, on every page
    held: str | None = None  # the parked position the client was last sent
    quiet_since = time.monotonic()
    while True:
        bell = reader.doorbell.current_story(story)
        if sent == -1:
            _, kept = await reader.story_kept(story)
            state = kept.stamp
            sent = state.version
            if kept.raw:
                held = kept.parked
                yield [states.push(kept, state.position)]
        else:
            kept, state, records = await reader.story_since(story, sent or 0, READ_AHEAD)
            page = []
            for r in records:
                update = decode_record(r)
                position = update.position or ""
                if seen is not None and Position.parse(position).id <= seen.id:
                    continue
                event = lens.event(_update_event(update, r))
                if recalls is not None and await recalls.recalled(update):
                    event.record, event.summary, event.recalled = None, "recalled", True
                page.append(Push("update", _encode(event), position))
            sent = (sent or 0) + len(records)
            if records and sent < state.version:
                yield page
                continue  # another page waits
            # Parking applies nothing and a redrive may apply nothing new: a story's
            # readers learn of either from the state, which says where it is parked.
            if kept.raw and (records or kept.parked != held):
                held = kept.parked
                page.append(states.push(kept, state.position))
            if page:
                quiet_since = time.monotonic()
                yield page
        # The bell rings for every story's commits, and on a timer: quiet is measured, or
        # a quiet stream never got its keepalive and a proxy closed it as idle.
        rang = await reader.doorbell.wait(bell, KEEPALIVE_S)
        if not rang or time.monotonic() - quiet_since >= KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield []


async def index_events(
    reader: Reader,
    last_event_id: Cursor | None,
    limit: int | None = None,
    lens: Lens = WHOLE,
    *,
    redacted: bool = False,
) -> AsyncIterator[list[Push]]:
    """`index` first on a new connection (every story, or the `limit` updated last),
    then `update` per update the projector has handled: applied, or `parked`; a page at
    a time. `held` when a story is parked or released, checked every `HELD_CHECK_S`
    (on a resumed stream, first for every story parked then). Through `lens`, only the
    stories a reader may see, and no `unreadable` entries (whose story cannot be told)
    unless it sees them all; `redacted`, see `Recalls`.

    Ids are cursors (a stream id per partition): positions of different partitions
    do not compare, so one position could not say where a reader of all of them was.
    """
    recalls = Recalls(reader, resumed=last_event_id is not None) if redacted else None
    partitions = reader.keys.partitions
    cursor = last_event_id
    behind = cursor is not None  # a resumed stream has missed updates to catch up with
    if cursor is None:
        points = await reader.checkpoints()
        cursor = Cursor(tuple(points.get(p, (0, 0)) for p in range(partitions)))
        entries, held = await reader.listed(limit, prefixes=lens.starts)
        checked = time.monotonic()
        yield [Push("index", _encode(entries), str(cursor))]
    else:
        held, checked = {}, 0.0  # what the client knows of is not known: all of it, then
    quiet_since = time.monotonic()
    swept = -1  # the doorbell's sweeps when this stream last read
    while True:
        bell = reader.doorbell.current()
        pushes = []
        if time.monotonic() - checked >= HELD_CHECK_S:
            # Before the page's updates, so a client knows a story is parked as its
            # updates come; and before the page is read, which is not held meanwhile.
            held, changes = await _held_since(reader, held, lens.starts)
            checked = time.monotonic()
            pushes += [Push("held", _encode(change), str(cursor)) for change in changes]
        # Live, a page is the few updates of a commit, which its doorbell message carried
        # (`query/carried.py`). Else read: live, in one round trip; behind, big pages in
        # two, which keep the server free (see `reads.APPLIED`).
        sweeps = reader.doorbell.sweeps
        carried = None if behind or sweeps != swept else await reader.carried_since(cursor)
        if carried is None:
            swept = sweeps
            count = behind_count(partitions, reader.scripted) if behind else ONE_TRIP
            page = await reader.applied_since(cursor, count, bell)
            LIVE_PAGES.labels("read").inc()
        else:
            page = carried
            LIVE_PAGES.labels("carried").inc()
        cursor = await _shared_pushes(page, cursor, lens, recalls, pushes)
        behind = page.more
        del page, carried  # a stream whose client is slow waits at the yield: see `wire`
        if pushes:
            quiet_since = time.monotonic()
            yield pushes
        if behind:
            continue
        # The bell also rings on a timer (`Doorbell.poll_s`): quiet is measured, not
        # taken from the bell, or a quiet stream never got its keepalive.
        rang = await reader.doorbell.wait(bell, KEEPALIVE_S)
        if not rang or time.monotonic() - quiet_since >= KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield []


async def _shared_pushes(
    page: Applied, cursor: Cursor, lens: Lens, recalls: Recalls | None, pushes: list[Push]
) -> Cursor:
    """`_page_pushes`, made once a page for the streams that read it from the same cursor
    through the same lens: the index streams of one process share their reads of a page
    (`SharedReads`), and each decoded, summarized and encoded every update of it again.
    A stream that hides recalled updates makes its own (`Recalls` is its own)."""
    if recalls is not None:
        return await _page_pushes(page, cursor, lens, recalls, pushes)
    key = (cursor, lens)
    made: tuple[list[Push], Cursor] | None = page.pushed.get(key)
    if made is None:
        own: list[Push] = []
        made = (own, await _page_pushes(page, cursor, lens, None, own))
        page.pushed[key] = made
    pushes += made[0]
    return made[1]


async def _page_pushes(
    page: Applied, cursor: Cursor, lens: Lens, recalls: Recalls | None, pushes: list[Push]
) -> Cursor:
    """The page's updates as pushes (appended to `pushes`); returns the cursor past them."""
    for sid, p, raw in page.found:
        cursor = cursor.moved(p, sid)
        try:
            update = decode_record(raw)
        except ValueError as exc:  # InvalidUpdate; msgspec's DecodeError if not JSON
            if lens.whole:
                # One bad entry must not stop every dashboard, at every reconnection.
                position = str(Position(p, sid))
                log.error("unreadable log entry", position=position, error=str(exc))
                unreadable = UnreadableEvent(position, str(exc))
                pushes.append(Push("unreadable", _encode(unreadable), str(cursor)))
            continue
        if not lens.sees(update.subject):
            continue
        raw_entry = page.entries.get(update.subject)
        entry = _entry.decode(raw_entry) if raw_entry else None
        event = lens.event(_update_event(update, None, entry))
        if recalls is not None and await recalls.recalled(update):
            event.summary, event.recalled = "recalled", True
        # Under the checkpoint but not in the read model: the projector parked it.
        event.parked = entry is None or entry.version < event.version
        pushes.append(Push("update", _encode(event), str(cursor)))
    return cursor


class Recalls:
    """For a reader without the audit right: which updates of the stream are recalled
    as erroneous by now. Only a resumed stream replays updates from before a recall:
    each story's recalls are read once, with its first update; a recall that comes
    later counts from then on."""

    def __init__(self, reader: Reader, *, resumed: bool) -> None:
        self.reader, self.resumed = reader, resumed
        self.known: dict[str, dict[Ref, Hidden]] = {}
        self.corrections: dict[str, list[Update]] = defaultdict(list)
        """Those passed, by story: a recall later takes them, and corrections of them, out."""

    async def recalled(self, update: Update) -> bool:
        story = update.subject
        if story not in self.known:
            self.known[story] = await self.reader.recalled(story) if self.resumed else {}
        passed = self.corrections[story]
        self.known[story] = recalled([*passed, update], self.known[story])
        if isinstance(update, CorrectionIssued):
            passed.append(update)
        return (update.source, update.id) in self.known[story]


async def _held_since(
    reader: Reader, before: dict[str, str], starts: tuple[str, ...] = ()
) -> tuple[dict[str, str], list[HeldEvent]]:
    """The parked stories now (of those that start with `starts`, if any), and each
    story parked or released since `before`.

    Polled, not paged: a release (a redrive) is no log entry, and the checkpoint may
    have passed what gets parked."""
    now = await reader.parked_lately(HELD_CHECK_S)
    if starts:
        now = {k: v for k, v in now.items() if k.startswith(starts)}
    changed = sorted(s for s in now.keys() | before.keys() if now.get(s) != before.get(s))
    if not changed:
        return now, []
    entries = await reader.entries(changed)
    return now, [
        HeldEvent(story, now.get(story), _entry.decode(raw) if raw else None)
        for story, raw in zip(changed, entries, strict=True)
    ]


class _States:
    """A story stream's state pushes: whole, or as patches from the one it sent last."""

    def __init__(self, lens: Lens, patches: Patches | None) -> None:
        self.lens, self.patches = lens, patches
        self.sent: str | None = None  # the ETag of the state this stream sent last

    def push(self, kept: Kept, position: str | None) -> Push:
        body, tag = rendered_now(kept, self.lens)
        if self.patches is None:
            return Push("state", body, position)
        patch = self.patches.between(self.sent, body, tag)
        self.sent = tag
        return Push("state", body, position) if patch is None else Push("patch", patch, position)


def _update_event(
    update: Update, raw: bytes | None, entry: IndexEntry | None = None
) -> UpdateEvent:
    return UpdateEvent(
        story=update.subject,
        version=update.version or 0,
        position=update.position or "",
        id=update.id,
        type=str(update.__struct_config__.tag),
        summary=summarize(update),
        record=_record.decode(raw) if raw is not None else None,
        entry=entry,
    )
