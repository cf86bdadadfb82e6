"""A story in other people's formats: schema.org JSON-LD and TimelineJS. Pure functions."""

from __future__ import annotations

from html import escape
from typing import Any

from dateline.domain.state import Entry
from dateline.query.views import StoryView
from dateline_schemas import parse_fuzzy_date

SCHEMA = "https://schema.org/"
_EVENT_STATUS = {
    "scheduled": "EventScheduled",
    "rescheduled": "EventRescheduled",
    "postponed": "EventPostponed",
    "cancelled": "EventCancelled",
    "in_progress": "EventScheduled",
    "ended": "EventScheduled",
}


def jsonld(story: StoryView, base_url: str) -> dict[str, Any]:
    """The story as a schema.org Event: items as sub-events, statements as Quotations,
    correction notes as CorrectionComments. `@id`s under `base_url` (the configured
    public URL), or relative to the document when it is empty."""
    url = f"{base_url}/v1/stories/{story.id}"
    doc: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Event",
        "@id": url,
        "identifier": story.id,
        "name": story.title or story.id,
        "eventStatus": SCHEMA + "EventScheduled",
        "subEvent": [_sub_event(url, item) for item in story.schedule.values()],
        "subjectOf": [_quotation(url, s) for s in story.statements.values()],
        "correction": [
            {
                "@type": "CorrectionComment",
                "text": c.note,
                "datePublished": c.time,
                "about": f"{url}#update-{c.corrects}",
            }
            for c in story.corrections
        ],
    }
    if story.summary:
        doc["description"] = story.summary
    if story.place:
        doc["location"] = {"@type": "Place", "name": story.place}
    if story.people:
        doc["attendee"] = [{"@type": "Person", "name": p} for p in story.people]
    if story.outcome:
        doc["about"] = {"@type": "Thing", "name": story.outcome.result}
        doc["disambiguatingDescription"] = story.outcome.summary
    dates = [i.starts_at.at for i in story.schedule.values() if i.starts_at]
    ends = [i.ends_at.at for i in story.schedule.values() if i.ends_at]
    if dates:
        doc["startDate"] = min(dates, key=lambda d: parse_fuzzy_date(d).start)
    if ends:
        doc["endDate"] = max(ends, key=lambda d: parse_fuzzy_date(d).start)
    return doc


def _sub_event(url: str, item: Any) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "@type": "Event",
        "@id": f"{url}#item-{item.item}",
        "name": item.title,
        "eventStatus": SCHEMA + _EVENT_STATUS[item.status],
    }
    if item.starts_at:
        sub["startDate"] = item.starts_at.at
    if item.ends_at:
        sub["endDate"] = item.ends_at.at
    if item.previous_starts:
        sub["previousStartDate"] = [w.at for w in item.previous_starts]
    if item.location:
        sub["location"] = {"@type": "Place", "name": item.location}
    if item.participants:
        sub["attendee"] = [{"@type": "Person", "name": p} for p in item.participants]
    return sub


def _quotation(url: str, said: Any) -> dict[str, Any]:
    quote: dict[str, Any] = {
        "@type": "Quotation",
        "@id": f"{url}#statement-{said.statement}",
        "text": said.text,
        "creator": {"@type": "Person", "name": said.speaker},
        "dateCreated": said.time,
    }
    if said.speaker_role:
        quote["creator"]["jobTitle"] = said.speaker_role
    if said.language:
        quote["inLanguage"] = said.language
    if said.in_reply_to:
        quote["isBasedOn"] = f"{url}#statement-{said.in_reply_to}"
    return quote


def timelinejs(story: StoryView, timeline: list[Entry]) -> dict[str, Any]:
    """TimelineJS 3 JSON: a slide per timeline entry, dates as precise as the source was.

    TimelineJS puts `headline`, `text` and `display_date` into the page as HTML: every
    text a feed wrote is escaped, so a quote holding markup shows as the quote."""
    return {
        "title": {
            "text": {
                "headline": escape(story.title or story.id),
                "text": escape(story.summary or ""),
            },
        },
        "events": [
            {
                "unique_id": f"v{e.version}",
                "start_date": _tl_date(e.time, e.precision),
                "text": {"headline": escape(e.summary), "text": escape(f"{e.type} · {e.source}")},
                "group": e.type.removeprefix("dateline.").split(".")[0],
            }
            for e in timeline
        ],
    }


def _tl_date(text: str, precision: str) -> dict[str, str]:
    at = parse_fuzzy_date(text).start
    date = {"year": str(at.year), "month": str(at.month)}
    if precision == "month":
        return date
    date["day"] = str(at.day)
    if precision in ("exact", "approximate") and len(text) > 10:
        date |= {"hour": str(at.hour), "minute": str(at.minute), "display_date": escape(text)}
    return date
