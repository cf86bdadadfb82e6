"""Pure projections: a story's state from its updates, no I/O."""

from dateline.domain.story import (
    Journal,
    advance,
    advance_in_place,
    copy_state,
    fork,
    project,
    unfold,
)

__all__ = ["Journal", "advance", "advance_in_place", "copy_state", "fork", "project", "unfold"]
