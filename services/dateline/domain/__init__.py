"""Pure projections: a story's state from its updates, no I/O."""

from dateline.domain.story import advance, advance_in_place, copy_state, fork, project

__all__ = ["advance", "advance_in_place", "copy_state", "fork", "project"]
