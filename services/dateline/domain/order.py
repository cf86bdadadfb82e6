"""How updates of one story are ordered, and when two statements are the same."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any

from dateline_schemas import Update

# Coarser first: "earlier that day" must not sort after a known time of that day.
_PRECISION_RANK = {"month": 0, "day": 1, "approximate": 2, "minute": 3, "exact": 4}


def order_key(update: Update) -> list[Any]:
    """(event instant, precision, story version): the contract's "later time wins, then log"."""
    return [update.time.timestamp(), _PRECISION_RANK[update.timeprecision], update.version or 0]


def fold_text(text: str) -> str:
    """NFKC, case-folded, whitespace folded: rule 3's comparison of statements."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def statement_key(speaker: str, text: str, time: datetime) -> str:
    # The day is the one in the update's own offset: where the speaker was.
    return f"{fold_text(speaker)}\x1f{fold_text(text)}\x1f{time.date().isoformat()}"
