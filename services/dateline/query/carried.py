"""The pages the doorbell carried (`store/pages.py`): a live index stream's next page
without a read, when they reach as far as the commits announced.

Each partition's announced checkpoint is the furthest any doorbell message named since
the subscription was made. A stream whose cursor stands at a partition's announced
checkpoint has nothing to read there; one behind it walks the pages of its version from
its cursor, each beginning where the one before ended, and reads (as before) when a
page is missing: a commit too large to carry, an update parked, a message from before
this process listened, a rebuild's commits. The doorbell rings on a timer and when its
subscription is made again; after such a ring (`Doorbell.sweeps`) a stream reads, so a
message it did not hear costs it a poll's wait, as before, never an update.
"""

from __future__ import annotations

from collections.abc import Hashable

import msgspec
import structlog

from dateline.domain.positions import Cursor, stream_id
from dateline.store.pages import Page, decode_page

log = structlog.get_logger("dateline.query")
KEEP = 16
"""Pages kept a partition: a stream further behind than that reads. (A live stream is a
pace behind at most, a page or two; 16 pages of 64 KiB at most, over 8 partitions, are
8 MiB.)"""

UNKNOWN = (2**63, 0)
"""Announced when a message's checkpoint cannot be told: no page reaches it."""

Found = list[tuple[tuple[int, int], int, bytes]]
"""(stream id, partition, record), in stream id order (`reader.Applied.found`)."""


class Carried:
    """The doorbell's pages and announced checkpoints, as one of its listeners."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.live = False
        self.announced: list[tuple[int, int] | None] = [None] * partitions
        self.pages: dict[tuple[str, int], dict[tuple[int, int], Page]] = {}
        """(version, partition) -> the page that begins after each checkpoint."""
        self._heard = 0
        self._last: tuple[Hashable, tuple[Found, dict[str, bytes | None]]] | None = None
        """The last answer, for the streams that ask from the same cursor before the
        next message: they share it, and what they make of it (`live._shared_pushes`)."""

    def heard(self, message: bytes | None, live: bool) -> None:
        """A doorbell listener: `<partition>:<checkpoint>[ <story> ...]` moves that
        partition's announced checkpoint on; the subscription made or lost forgets all."""
        self._heard += 1
        if message is None:
            self.live = live
            self.announced = [None] * self.partitions
            self.pages.clear()
            return
        head, colon, news = message.partition(b":")
        if not colon or not head.isdigit() or int(head) >= self.partitions:
            return  # a switch, a revocation: the ring that comes with it is a sweep
        try:
            at = stream_id(news.split(b" ", 1)[0].decode())
        except ValueError:  # not a checkpoint: past any page, so the stream reads
            log.warning("doorbell message names no checkpoint", message=message[:80])
            at = UNKNOWN
        now = self.announced[int(head)]
        if now is None or at > now:
            self.announced[int(head)] = at

    def page(self, raw: bytes) -> None:
        """The doorbell's page hook: kept, `KEEP` a partition at most, of the version
        whose projectors carry pages now (another's are dropped)."""
        self._heard += 1
        try:
            page = decode_page(raw)
            after = stream_id(page.after)
        except (msgspec.DecodeError, ValueError) as exc:  # a writer of another release
            log.warning("doorbell page unreadable; read instead", error=str(exc))
            return
        if any(version != page.version for version, _ in self.pages):  # one switched to
            self.pages = {k: book for k, book in self.pages.items() if k[0] == page.version}
        book = self.pages.setdefault((page.version, page.partition), {})
        book[after] = page
        if len(book) > KEEP:
            del book[next(iter(book))]

    def since(self, cursor: Cursor, version: str) -> tuple[Found, dict[str, bytes | None]] | None:
        """What the pages hold past `cursor` up to every partition's announced
        checkpoint, and the index entries of their stories; None if they do not reach
        it (a partition whose announced checkpoint is unknown has nothing announced)."""
        if not self.live or len(cursor.ids) != self.partitions:
            return None
        key = (cursor, version, self._heard)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        found: Found = []
        entries: dict[str, bytes | None] = {}
        for p, start in enumerate(cursor.ids):
            at, goal = start, self.announced[p]
            book = self.pages.get((version, p), {})
            while goal is not None and at < goal:
                page = book.get(at)
                if page is None:
                    return None
                found += [(stream_id(eid), p, bytes(record)) for eid, record in page.entries]
                entries.update((story, bytes(entry)) for story, entry in page.index.items())
                at = stream_id(page.upto)
        found.sort()
        self._last = (key, (found, entries))
        return found, entries
