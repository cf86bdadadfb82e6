"""The update log: atomic batch appends, single-story reads, partition reads."""

from dateline.log.client import (
    REFUSED,
    AppendResult,
    BatchTooLarge,
    Log,
    PartitionMismatch,
    Prepared,
)

__all__ = ["REFUSED", "AppendResult", "BatchTooLarge", "Log", "PartitionMismatch", "Prepared"]
