"""dateline.story.*: a story opens, links to others, concludes and reopens."""

from __future__ import annotations

from typing import Literal

from dateline_schemas._base import Envelope, Payload
from dateline_schemas._rules import Name, Text

LinkRel = Literal["prior", "background", "follow_up", "related", "distraction"]


class StoryOpenedData(Payload, frozen=True):
    title: Text
    place: Name | None = None
    summary: Text | None = None
    people: list[Name] = []
    tags: list[Name] = []


class StoryLinkedData(Payload, frozen=True):
    story: Name
    """Another story id, or a URI."""
    rel: LinkRel
    note: Text | None = None


class StoryConcludedData(Payload, frozen=True):
    summary: Text | None = None


class StoryReopenedData(Payload, frozen=True):
    reason: Text | None = None


class StoryOpened(Envelope, frozen=True, kw_only=True, tag="dateline.story.opened"):
    data: StoryOpenedData


class StoryLinked(Envelope, frozen=True, kw_only=True, tag="dateline.story.linked"):
    data: StoryLinkedData


class StoryConcluded(Envelope, frozen=True, kw_only=True, tag="dateline.story.concluded"):
    data: StoryConcludedData = StoryConcludedData()


class StoryReopened(Envelope, frozen=True, kw_only=True, tag="dateline.story.reopened"):
    data: StoryReopenedData = StoryReopenedData()
