"""A story's state now, as a reader sees it: rendered once from what was read, for every
request and live stream that reads it alike."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import msgspec

from dateline.domain.overdue import next_due
from dateline.query.cache import Kept
from dateline.query.scope import Lens
from dateline.query.views import etag, stored_view

_encode = msgspec.json.Encoder().encode


def rendered_now(kept: Kept, lens: Lens) -> tuple[bytes, str]:
    """`kept` (a read with a state) through `lens`, and its ETag: kept with the read until
    it is dropped (a commit) or an item of it falls overdue. A story's GETs and its live
    streams' state pushes are one rendering: fifty streams of a story of 16,000
    statements each rendered its 5.4 MB after every commit."""
    assert kept.raw is not None  # noqa: S101  # callers answer a missing story themselves
    found = kept.rendered.get(lens)
    if found is not None and time.time() < found[2]:
        return found[0], found[1]
    now = datetime.now(UTC)
    view = lens.view(stored_view(kept.raw, kept.parked, now))
    body = _encode(view)
    due = next_due(view.schedule.values(), now)
    tag = etag(body)
    kept.rendered[lens] = (body, tag, due.timestamp() if due else math.inf)
    return body, tag
