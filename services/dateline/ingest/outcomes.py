"""The log's answers as on-call reads them, the same way for a POST and an inbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dateline.runtime.metrics import REUSED_IDS
from dateline.store.log import AppendResult


def counting(service: str) -> None:
    """`reused`'s counter for `service`, made at 0 as it starts: Prometheus reads the
    first sample of a series as its start, so a first reuse counted into a new series
    would be no increase, and `DatelineFeedReusingIds` would not fire for it."""
    REUSED_IDS.labels(service)


def reused(log: Any, service: str, feed: str, results: Sequence[AppendResult]) -> None:
    """Count, and log a warning a time, each duplicate whose content is not its original's
    (`AppendResult.differs`): a feed that used an id again for other content lost that
    content, and neither a 200 nor an inbox says so loudly enough on its own."""
    for r in results:
        if r.differs:
            REUSED_IDS.labels(service).inc()
            log.warning(
                "id used again for other content; the log kept the first",
                feed=feed,
                story=r.subject,
                source=r.source,
                update=r.id,
                position=r.position,
                differs=",".join(r.differs),
            )
