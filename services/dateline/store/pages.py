"""A commit's page: what it applied in a partition, carried by its doorbell message.

A live index stream pushes each update the projector applied, with its story's index
entry. Read, that was two round trips to two servers a page (the log's entries, then
the store's checkpoints and index entries) for what the projector had in hand a moment
before. So a commit whose entries in a partition are every entry from the checkpoint it
moves to the one it writes carries them, and the index entries it wrote, at the end of
that partition's doorbell message; a query process whose stream stands at the page's
start pushes it with no read (`query/carried.py`).

The projector vouches for the entries between (`projector.commit.page_of`); the store
for the start: the commit script adds the page only if the checkpoint was where the
page begins (`moveto`, `store/scripts/advance.lua`), so a commit made by another
process meanwhile cannot be hidden by one; and, with the read models beside the log,
where the script computes the checkpoint (`advance`), only if it moves as far as the
page ends (an entry the group still holds keeps it short).

The message stays what older readers parse: `<partition>:<checkpoint> <story> ...`,
then a space, a NUL and the page (JSON). A page is carried only with the stories
named, so a reader that does not know pages reads its words as more story names, which
name no story, and drops what it keeps of the named ones as before.
"""

from __future__ import annotations

import msgspec

MARK = b" \x00"
"""What separates a doorbell message from the page it carries."""


class Page(msgspec.Struct, array_like=True, frozen=True):
    version: str
    """The read models' version the commit wrote (a rebuild's commits carry theirs)."""
    partition: int
    after: str
    """The checkpoint the commit moved from: its entries are every entry past it..."""
    upto: str
    """...up to this one, the checkpoint it wrote."""
    entries: list[tuple[str, msgspec.Raw]]
    """(stream id, record as a reader of the log opens it), in stream order."""
    index: dict[str, msgspec.Raw]
    """The index entry the commit wrote for each of their stories."""


encode_page = msgspec.json.Encoder().encode
decode_page = msgspec.json.Decoder(Page).decode


def split(message: bytes) -> tuple[bytes, bytes | None]:
    """A doorbell message, and the page it carries, if any."""
    news, mark, page = message.partition(MARK)
    return news, page if mark else None
