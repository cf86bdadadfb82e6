"""Admission: decode an update, then check its feed may write it. HTTP and inbox alike."""

from __future__ import annotations

from dateline.ingest.credentials import Feed, Refusal, refusal
from dateline_schemas import Decoded, InvalidUpdate, decode_update


def admit(feed: Feed, raw: bytes) -> Decoded | Refusal:
    """The update decoded, or why it is refused: invalid (a `Refusal` naming the
    contract's field and rule) or outside the feed's credentials (a `Forbidden`)."""
    try:
        decoded = decode_update(raw)
    except InvalidUpdate as exc:
        return Refusal(exc.problem.field, exc.problem.message)
    if (why := refusal(feed, decoded.update)) is not None:
        return Forbidden(*why)
    return decoded


class Forbidden(Refusal):
    """A valid update that the feed's credentials do not cover (403, not 422)."""
