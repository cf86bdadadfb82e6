"""Redis answers in bytes (the services' clients do not decode: most of what they read
is JSON or MessagePack, decoded once by msgspec); what they read as text is made so here."""

from __future__ import annotations


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def as_text_or_none(value: bytes | str | None) -> str | None:
    return None if value is None else as_text(value)
