"""Records as the log would hold them, for projection tests without Redis."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from dateline_schemas import Update, decode_update
from tests.factories import encode

HANOI = Path(__file__).resolve().parents[1] / "examples" / "hanoi-summit-2019.ndjson"


def as_logged(docs: Sequence[dict[str, Any] | bytes]) -> list[Update]:
    """Validate and number updates in arrival order, per story, as the log does on append."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records = []
    versions: dict[str, int] = {}
    for i, doc in enumerate(docs, 1):
        raw = doc if isinstance(doc, bytes) else encode(doc)
        update = decode_update(raw).update
        version = versions[update.subject] = versions.get(update.subject, 0) + 1
        records.append(
            msgspec.structs.replace(
                update,
                version=version,
                position=f"0:{i}-0",
                recordedtime=start + timedelta(seconds=i),
            )
        )
    return records


def _hanoi_lines() -> list[bytes]:
    return [line for line in HANOI.read_bytes().splitlines() if line.strip()]


HANOI_UPDATES = len(_hanoi_lines())
"""Updates in the example, both stories."""
HANOI_VERSION = sum(b'"subject": "hanoi-summit-2019"' in line for line in _hanoi_lines())
"""The Hanoi story's version once the example is published."""


def hanoi_version_of(update_id: str) -> int:
    """The Hanoi story's version once the example's update `update_id` is published."""
    ids = [msgspec.json.decode(line)["id"] for line in _hanoi_lines()]
    story = [
        i
        for i, line in zip(ids, _hanoi_lines(), strict=True)
        if b'"subject": "hanoi-summit-2019"' in line
    ]
    return story.index(update_id) + 1


def hanoi() -> list[Update]:
    lines = [line for line in HANOI.read_bytes().splitlines() if line.strip()]
    return [u for u in as_logged(lines) if u.subject == "hanoi-summit-2019"]
