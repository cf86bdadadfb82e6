"""Redis answers in bytes (the services' clients do not decode: most of what they read
is JSON or MessagePack, decoded once by msgspec); what they read as text is made so here."""

from __future__ import annotations

from typing import Any


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def as_text_or_none(value: bytes | str | None) -> str | None:
    return None if value is None else as_text(value)


def pairs(reply: list[Any]) -> list[tuple[bytes, Any]]:
    """A sorted set's `WITHSCORES` reply, read raw, as (member, score as sent: bytes in
    RESP2, a float in RESP3), for a caller that needs few of the scores as numbers."""
    if reply and isinstance(reply[0], list):
        return [(member, score) for member, score in reply]
    it = iter(reply)
    return list(zip(it, it, strict=True))


def scored(reply: list[Any]) -> list[tuple[bytes, float]]:
    """`pairs`, each score a float."""
    return [(member, float(score)) for member, score in pairs(reply)]
