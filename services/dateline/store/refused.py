"""What the validator refused from feeds' Redis inboxes: the `rejected` stream.

A feed that writes to its inbox is not answered, so each entry that cannot go into the
log is kept here, with the field and the reason, for its owners and on-call to read
(`dateline feeds refused`). The validator writes an entry in the same transaction as
its acknowledgement of the inbox entry (`add`), so an inbox entry is in the log, here,
or still pending. The stream keeps about the last `KEEP` entries.
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis

from dateline.store.layout import rejected_key

KEEP = 10_000
"""Refused inbox entries the stream keeps (about: trimmed with `MAXLEN ~`), newest."""
KEEP_BYTES = 4096
"""Of a refused entry, the first this many bytes are kept (`size` says how many it had)."""
_PAGE = 500

_envelope = msgspec.json.Decoder(dict[str, Any])


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """One refused inbox entry, as `dateline feeds refused --json` prints it."""

    at: str
    """The refusal's id in `rejected`: its milliseconds are when it was refused."""
    feed: str
    entry: str
    """The entry's id in the feed's inbox."""
    field: str
    """What was wrong: an attribute (`time`, `data.title`), or `feed`, `entry`, `id`."""
    reason: str
    id: str | None = None
    """The update's `id`, where the entry's text holds one."""
    subject: str | None = None
    """Its story, likewise."""
    size: int = 0
    """The entry's length in bytes."""
    truncated: bool = False
    """`record` holds only the first `KEEP_BYTES` of it."""
    record: str | None = None

    @property
    def ms(self) -> int:
        return int(self.at.split("-", 1)[0])


def add(
    pipe: Any, prefix: str, *, feed: str, entry: str, raw: bytes, field: str, reason: str
) -> None:
    """Queue one refusal on `pipe` (a pipeline or transaction of the validator's)."""
    pipe.xadd(
        rejected_key(prefix),
        {
            "feed": feed,
            "entry": entry,
            "record": raw[:KEEP_BYTES],
            "size": len(raw),
            "truncated": int(len(raw) > KEEP_BYTES),
            "field": field,
            "reason": reason,
        },
        maxlen=KEEP,
        approximate=True,
    )


def refusal(eid: bytes, fields: dict[bytes, bytes], *, with_record: bool = False) -> Refusal:
    """One entry of `rejected`, with the update's id and story where its text is JSON."""
    raw = fields.get(b"record", b"")
    found: dict[str, Any] = {}
    with contextlib.suppress(msgspec.DecodeError):  # not JSON, or cut at KEEP_BYTES
        found = _envelope.decode(raw)
    text = raw.decode(errors="replace")
    return Refusal(
        at=eid.decode(),
        feed=fields.get(b"feed", b"").decode(errors="replace"),
        entry=fields.get(b"entry", b"").decode(errors="replace"),
        field=fields.get(b"field", b"").decode(errors="replace"),
        reason=fields.get(b"reason", b"").decode(errors="replace"),
        id=_text(found.get("id")),
        subject=_text(found.get("subject")),
        size=int(fields.get(b"size", len(raw))),
        truncated=fields.get(b"truncated") == b"1",
        record=text if with_record else None,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


async def refusals(
    client: aioredis.Redis,
    prefix: str,
    *,
    feed: str | None = None,
    limit: int = 20,
    since_ms: int = 0,
    with_record: bool = False,
) -> list[Refusal]:
    """The newest `limit` refusals (of `feed`, if named; from `since_ms` on), newest
    first. Pages back through the stream until it has them (it holds about `KEEP`)."""
    found: list[Refusal] = []
    top = "+"
    low = f"{since_ms}-0" if since_ms else "-"
    while len(found) < limit:
        rows = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await client.xrevrange(rejected_key(prefix), max=top, min=low, count=_PAGE),
        )
        for eid, fields in rows:
            if feed is None or fields.get(b"feed") == feed.encode():
                found.append(refusal(eid, fields, with_record=with_record))
                if len(found) == limit:
                    break
        if len(rows) < _PAGE:
            break
        top = "(" + rows[-1][0].decode()
    return found


async def counted(client: aioredis.Redis, prefix: str) -> int:
    """How many refusals the stream holds."""
    return await client.xlen(rejected_key(prefix))
