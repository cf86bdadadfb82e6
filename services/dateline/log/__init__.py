"""The update log: atomic batch appends, single-story reads, partition reads."""

from dateline.log.client import (
    APPEND_SCRIPT,
    REFUSED,
    AppendResult,
    BatchTooLarge,
    Log,
    PartitionMismatch,
    Prepared,
)

__all__ = [
    "APPEND_SCRIPT",
    "REFUSED",
    "AppendResult",
    "BatchTooLarge",
    "Log",
    "PartitionMismatch",
    "Prepared",
]
