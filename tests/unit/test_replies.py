"""What the services read from Redis as text."""

from __future__ import annotations

from dateline.store.replies import as_text, as_text_or_none


def test_bytes_are_decoded_and_text_is_kept() -> None:
    assert as_text(b"1:1700000000000-0") == "1:1700000000000-0"
    assert as_text("sé") == "sé"
    assert as_text("sé".encode()) == "sé"


def test_nothing_stays_nothing() -> None:
    assert as_text_or_none(None) is None
    assert as_text_or_none(b"") == ""
    assert as_text_or_none(b"v2") == "v2"
