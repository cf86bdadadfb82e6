"""Issue 3's peer: the same stories through the eventsourcing library's projection runner.

Its fastest local store is POPO (in memory); it is also the only local one whose
recorder supports the subscriptions the runner needs (9.5's SQLite recorder raises
NotImplementedError; PostgreSQL needs a server). The runner builds its own
application, so the events are saved through `runner.app` while the runner
projects them: the figure is write + project, and the write alone is measured on
the same events for comparison. The view does the same work as our projector,
`advance_in_place`, with a refold from the story's updates when that says so.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import Application
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner

from dateline.domain import advance_in_place, project
from dateline.domain.state import StoryState
from dateline_schemas import Update, decode_record


class StoryLog(Aggregate):
    def __init__(self, story: str) -> None:
        self.story = story

    @staticmethod
    def create_id(story: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/stories/{story}")

    @event("Recorded")
    def record(self, body: str) -> None:
        """One update as the log stores it."""


class Stories(Application[UUID]):
    pass


class StoryView(POPOTrackingRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.states: dict[str, StoryState] = {}
        self.updates: dict[str, list[Update]] = {}

    def apply(self, update: Update, tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            story = update.subject
            self.updates.setdefault(story, []).append(update)
            state = self.states.get(story) or StoryState(id=story)
            if not advance_in_place(state, update):
                state = project(story, self.updates[story])
            self.states[story] = state
            self._insert_tracking(tracking)


class StoryProjection(Projection[StoryView]):
    name = "storyprojection"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        if isinstance(domain_event, StoryLog.Recorded):
            self.view.apply(decode_record(domain_event.body.encode()), tracking)
        elif tracking.notification_id:
            with self.view._database_lock:
                self.view._insert_tracking(tracking)


def _story_logs(records: list[bytes]) -> list[StoryLog]:
    logs: dict[str, StoryLog] = {}
    for raw in records:
        story = decode_record(raw).subject
        if story not in logs:
            logs[story] = StoryLog(story)
        logs[story].record(raw.decode())
    return list(logs.values())


def run_peer(records: list[bytes]) -> tuple[float, float, int]:
    """(updates/s written and projected by the runner, updates/s written alone, stories)."""
    env = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    alone = Stories(env)
    logs = _story_logs(records)
    start = time.perf_counter()
    alone.save(*logs)
    write_rate = len(records) / (time.perf_counter() - start)
    alone.close()
    logs = _story_logs(records)
    start = time.perf_counter()
    with ProjectionRunner(
        application_class=Stories, projection_class=StoryProjection, view_class=StoryView, env=env
    ) as runner:
        recordings = runner.app.save(*logs)
        runner.wait(max(r.notification.id for r in recordings), timeout=600)
        rate = len(records) / (time.perf_counter() - start)
        stories = len(runner.projection.view.states)
    return rate, write_rate, stories
