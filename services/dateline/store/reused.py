"""An id used twice: whether a duplicate is the same update sent again, or other content.

The contract makes `source` + `id` unique, and a second update with the pair a duplicate,
accepted once. A feed that retries sends the same update; a feed that reuses an id (a
counter reset, two desks sharing a source) sends other content under it, and the log
keeps the first. The answer is a duplicate either way, as the contract says; where the
content differs, it also names what differs, so that the feed's developer learns that
the new content was not taken rather than reading "duplicate" as "already have it".
"""

from __future__ import annotations

from typing import Any

import msgspec

from dateline_schemas.updates import LOG_FIELDS

NOT_COMPARED = frozenset({*LOG_FIELDS, "seal"})
"""What the log writes beside the producer's update (its version, position, recorded
time and editor right, and a sealed log's seal): not the feed's content."""
_LOGGED = (b',"version":', b',"editor":true,"version":')
"""What the append writes after the update's text: its editor right, if held, then the
log's fields."""
_MISSING = object()
_decode = msgspec.json.Decoder(dict[str, Any]).decode


def differences(original: bytes, sent: bytes) -> list[str]:
    """`compared`, told at once when the record begins with the update's own text (a retry
    of the same update, as it usually is): a feed that retries a whole load is answered
    without decoding a record."""
    head = len(sent) - 1
    if original.startswith(sent[:head]) and original.startswith(_LOGGED, head):
        return []
    return compared(original, sent)


def compared(original: bytes, sent: bytes) -> list[str]:
    """The attributes in which `sent` differs from `original`, sorted, a member of `data`
    as `data.<name>`; [] for the same update. Both are JSON objects: `original` the record
    the log keeps, `sent` the update as validated. Compared as values, not as text: the
    order of members, and spaces in an extension's value, are not content."""
    kept, new = _decode(original), _decode(sent)
    found: list[str] = []
    for name in sorted((kept.keys() | new.keys()) - NOT_COMPARED):
        was, now = kept.get(name, _MISSING), new.get(name, _MISSING)
        if _same(was, now):
            continue
        if name == "data" and isinstance(was, dict) and isinstance(now, dict):
            found += [
                f"data.{key}"
                for key in sorted(was.keys() | now.keys())
                if not _same(was.get(key, _MISSING), now.get(key, _MISSING))
            ]
        else:
            found.append(name)
    return found


def _same(a: object, b: object) -> bool:
    # Python's == says True == 1 == 1.0; JSON's true and 1 are other values.
    return type(a) is type(b) and (a == b if not isinstance(a, dict | list) else _deep(a, b))


def _deep(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return False


def said(found: list[str]) -> str:
    """The duplicate's reason for `differences`' names."""
    return (
        f"this source and id were used before, for an update that differs in "
        f"{', '.join(found)}: the log keeps the first and took nothing of this one. Other "
        "content needs an id of its own"
    )
