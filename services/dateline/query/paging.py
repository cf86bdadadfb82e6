"""Where a page of the story list ends, and the next one starts.

The list is ordered as the by-time indexes order it: by score (`recorded_score`, the
story's `recordedtime` in seconds), then by story id, both from the highest. A page
ends at its last story; the next page holds the stories strictly after it in that
order. So a page never repeats a story of the pages before it, and no story is
skipped that was not updated meanwhile: a story updated after its page was read moves
to the top of the list, where a dashboard following `/v1/live` already sees it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dateline.store.readmodels import recorded_score
from dateline_schemas import RuleError, check_story_id


class BadPlace(ValueError):
    pass


@dataclass(frozen=True, order=True)
class Place:
    """A story's place in the list: larger is newer."""

    score: float
    story: str

    @classmethod
    def of(cls, story: str, recordedtime: str | None) -> Place:
        return cls(recorded_score(recordedtime), story)

    @classmethod
    def parse(cls, text: str) -> Place:
        """The `next` a page gave (`<score>:<story id>`)."""
        score, colon, story = text.partition(":")
        try:
            value = float(score)
            check_story_id(story)
        except (ValueError, RuleError):
            value = math.nan
        if not colon or not math.isfinite(value):
            raise BadPlace(f"expected the `next` of a page of this list, got {text!r}")
        return cls(value, story)

    def __str__(self) -> str:
        return f"{self.score!r}:{self.story}"
