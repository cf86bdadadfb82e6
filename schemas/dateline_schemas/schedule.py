"""dateline.schedule.*: items on a story's programme and how their status changes.

The status names follow schema.org `eventStatus` (EventScheduled, EventRescheduled,
EventPostponed, EventCancelled) plus `in_progress` and `ended` from planning desks.
"""

from __future__ import annotations

from dateline_schemas._base import Envelope, Payload
from dateline_schemas._rules import DateText, Duration, Name, Ref, Text


class ScheduleAnnouncedData(Payload, frozen=True):
    item: Ref
    title: Text
    starts_at: DateText
    ends_at: DateText | None = None
    location: Name | None = None
    participants: list[Name] = []
    parent: Ref | None = None


class ScheduleRescheduledData(Payload, frozen=True):
    item: Ref
    starts_at: DateText | None = None
    shift: Duration | None = None
    ends_at: DateText | None = None
    reason: Text | None = None

    def check(self) -> None:
        if (self.starts_at is None) == (self.shift is None):
            raise ValueError(
                "starts_at: give exactly one of starts_at (the new start) or shift "
                "(a duration relative to the current start)"
            )


class ScheduleReasonData(Payload, frozen=True):
    item: Ref
    reason: Text | None = None


class ScheduleReinstatedData(Payload, frozen=True):
    item: Ref
    starts_at: DateText | None = None
    reason: Text | None = None


class ScheduleRelocatedData(Payload, frozen=True):
    item: Ref
    location: Name
    reason: Text | None = None


class ScheduleStartedData(Payload, frozen=True):
    item: Ref


class ScheduleEndedData(Payload, frozen=True):
    item: Ref
    early: bool | None = None


class ScheduleAnnounced(Envelope, frozen=True, kw_only=True, tag="dateline.schedule.announced"):
    data: ScheduleAnnouncedData


class ScheduleRescheduled(Envelope, frozen=True, kw_only=True, tag="dateline.schedule.rescheduled"):
    data: ScheduleRescheduledData


class SchedulePostponed(Envelope, frozen=True, kw_only=True, tag="dateline.schedule.postponed"):
    data: ScheduleReasonData


class ScheduleCancelled(Envelope, frozen=True, kw_only=True, tag="dateline.schedule.cancelled"):
    data: ScheduleReasonData


class ScheduleReinstated(Envelope, frozen=True, kw_only=True, tag="dateline.schedule.reinstated"):
    data: ScheduleReinstatedData


class ScheduleRelocated(Envelope, frozen=True, kw_only=True, tag="dateline.schedule.relocated"):
    data: ScheduleRelocatedData


class ScheduleStarted(Envelope, frozen=True, kw_only=True, tag="dateline.schedule.started"):
    data: ScheduleStartedData


class ScheduleEnded(Envelope, frozen=True, kw_only=True, tag="dateline.schedule.ended"):
    data: ScheduleEndedData
