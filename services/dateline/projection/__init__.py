"""Pure projections: a story's state from its updates, no I/O."""

from dateline.projection.story import advance, copy_state, project

__all__ = ["advance", "copy_state", "project"]
