"""What a reader limited to story prefixes is shown: nothing that names another story;
and what a `reader` (no audit right) is shown of an update recalled as erroneous.

A story it may see can link to one it may not (Hanoi's summit to the Cohen hearing,
say). The link, the timeline line and the live push that name that story, and its id
in the audit trail, are left out or shown as a link to a story outside the scope,
so a story the reader may not see answers everywhere as one that does not exist.
Pure functions; a reader with no prefixes gets everything as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from dateline.domain.state import Entry
from dateline.domain.story import recalled_corrections
from dateline.domain.summary import UNSEEN_LINK, linked_story
from dateline.query.views import StoryView, UpdateEvent
from dateline.store.readers import Grant

_record = msgspec.json.Decoder(dict[str, Any])
_encode = msgspec.json.Encoder().encode
_LINKED = b"dateline.story.linked"


@dataclass(frozen=True, slots=True)
class Lens:
    starts: tuple[str, ...] = ()
    audits: bool = True
    """Sees the audit trail whole (editor, ops); a `reader` does not see what a recall
    took out, nor the notes of corrections of it, which may say what it was."""

    @classmethod
    def of(cls, grant: Grant) -> Lens:
        return cls(tuple(grant.story_prefixes), grant.audits)

    @property
    def whole(self) -> bool:
        return not self.starts

    def sees(self, story: str) -> bool:
        return not self.starts or story.startswith(self.starts)

    def view(self, view: StoryView) -> StoryView:
        if not self.whole:
            view.links = tuple(link for link in view.links if self.sees(link.story))
        if not self.audits and view.hidden and view.corrections:
            out = recalled_corrections(view.corrections, view.hidden)
            view.corrections = tuple(n for n in view.corrections if (n.source, n.id) not in out)
        return view

    def entries(self, entries: list[Entry]) -> list[Entry]:
        if self.whole:
            return entries
        for entry in entries:
            other = linked_story(entry.type, entry.summary)
            if other is not None and not self.sees(other):
                entry.summary = UNSEEN_LINK
        return entries

    def event(self, event: UpdateEvent) -> UpdateEvent:
        other = linked_story(event.type, event.summary)
        if other is not None and not self.sees(other):
            event.summary, event.record = UNSEEN_LINK, None
        return event

    def records(self, records: list[bytes]) -> list[bytes]:
        """The audit trail, a link to a story outside the scope without what it names."""
        if self.whole:
            return records
        return [self._record(raw) if _LINKED in raw else raw for raw in records]

    def _record(self, raw: bytes) -> bytes:
        record = _record.decode(raw)
        other = (record.get("data") or {}).get("story")
        if not isinstance(other, str) or self.sees(other):
            return raw
        return _encode({k: v for k, v in record.items() if k != "data"} | {"outofscope": True})
