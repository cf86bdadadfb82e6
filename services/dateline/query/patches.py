"""Live state pushes as what changed: JSON merge patches (RFC 7396), made once per change.

A story stream sends the story's state after each page of updates. Whole, a state of
5,000 statements is a megabyte: 50 dashboards on such a story received 988 MB for 10
updates. A stream that asks for patches (`?patches=true`, the dashboard does) gets its
first state whole, and then `patch` events: the merge patch from the state it was sent
last to the new one, which for a new statement is that statement. Every stream of the
same story and lens shares a patch: it is made once, by the first stream to need it,
from the rendering that stream was sent, which this process keeps a while (bytes, not
decoded: a megabyte of JSON is ten in Python objects). A stream whose last state is no
longer kept gets the state whole, as it would without patches.

RFC 7396 has no way to say "set to null": a field that became null is removed by the
patch, and a client holds it as absent, which the dashboard reads alike.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode
_members = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_NULL = msgspec.Raw(b"null")


def text_patch(old: bytes | msgspec.Raw, new: bytes | msgspec.Raw) -> Any:
    """`merge_patch` of two renderings, read as JSON text: an object's members are
    split as their text (`msgspec.Raw`) and compared as such, and only objects that
    differ are split further; what the patch carries stays text. Decoded whole, the
    two states of a story of 16,000 statements (5.4 MB each) were half a query
    process's CPU with its patch streams at 20 commits a second. The renderings come
    from one encoder: a member equal in value is equal in text (were it not, the patch
    would carry it again, still right)."""
    if not (_is_object(old) and _is_object(new)):
        return new if isinstance(new, msgspec.Raw) else msgspec.Raw(new)
    if (added := _grown(bytes(old), bytes(new))) is not None:
        return _members(added)
    before, after = _members(old), _members(new)
    patch: dict[str, Any] = dict.fromkeys(before.keys() - after.keys())
    for key, value in after.items():
        was = before.get(key)
        if was is None:
            patch[key] = value
        elif was != value:
            patch[key] = None if value == _NULL else text_patch(was, value)
    return patch


def _is_object(text: bytes | msgspec.Raw) -> bool:
    return memoryview(text)[:1].tobytes() == b"{"


def _grown(old: bytes, new: bytes) -> bytes | None:
    """The members `new` has after all of `old`'s, unchanged, as an object's text; None
    if `new` is not `old` with members added at its end. A story's statements grow so:
    the patch of a new one is found by one comparison of the text, not by splitting
    16,000 members twice. The `,` where `old` closed ends its last member's value."""
    cut = len(old) - 1
    if new[cut : cut + 1] != b"," or not new.startswith(memoryview(old)[:cut]):
        return None
    return b"{" + new[cut + 1 :]


def merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7396 patch that turns `old` into `new` (objects compared key by key,
    anything else replaced whole)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = dict.fromkeys(old.keys() - new.keys())
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value) if value is not None else None
    return patch


def apply_patch(target: Any, patch: Any) -> Any:
    """RFC 7396's MergePatch(target, patch), as a client applies it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_patch(out.get(key), value)
    return out


class Patches:
    """Per process: the renderings streams sent lately, by their ETag (bytes, within a
    budget), and the patches made between them. A stream that skipped versions (a page
    of several updates) is patched from the state it has, if that is still kept."""

    def __init__(self, max_bytes: int = 32 << 20, keep: int = 1024) -> None:
        self.max_bytes, self.keep = max_bytes, keep
        self._sent: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._made: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.made = self.shared = 0

    def between(self, sent: str | None, body: bytes, tag: str) -> bytes | None:
        """The patch from the rendering tagged `sent` to `body` (tagged `tag`), or None
        when it cannot be made (send the state whole)."""
        if sent is not None and (found := self._made.get((sent, tag))) is not None:
            self._made.move_to_end((sent, tag))
            self.shared += 1
            return found
        self._keep(tag, body)
        if sent is None or (old := self._sent.get(sent)) is None:
            return None
        self._sent.move_to_end(sent)
        patch = _encode(text_patch(old, body))
        self._made[(sent, tag)] = patch
        while len(self._made) > self.keep:
            self._made.popitem(last=False)
        self.made += 1
        return patch

    def _keep(self, tag: str, body: bytes) -> None:
        if tag in self._sent:
            self._sent.move_to_end(tag)
            return
        if len(body) > self.max_bytes // 4:
            return  # too big to keep: such a story's streams get states whole
        self._sent[tag] = body
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, dropped = self._sent.popitem(last=False)
            self._bytes -= len(dropped)
