"""The table of refused updates: each names the field and the rule it breaks.

Shared by the unit test (the decoder) and the integration test (the log writes
nothing for any of them).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from tests.factories import encode, update


class Case(NamedTuple):
    name: str
    raw: bytes
    field: str
    says: str  # a fragment the message must contain


def _without(doc: dict[str, Any], *path: str) -> dict[str, Any]:
    target = doc
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return doc


def _data(type_: str, **changes: Any) -> bytes:
    doc = update(type_)
    doc["data"].update(changes)
    return encode(doc)


OPENED = "dateline.story.opened"
ANNOUNCED = "dateline.schedule.announced"
RESCHEDULED = "dateline.schedule.rescheduled"
STATEMENT = "dateline.statement.made"

CASES: list[Case] = [
    # the envelope
    *[
        Case(f"missing {attr}", encode(_without(update(), attr)), attr, "required field is missing")
        for attr in ("specversion", "id", "source", "type", "subject", "time", "data")
    ],
    Case("specversion 0.3", encode(update(specversion="0.3")), "specversion", '"1.0"'),
    Case(
        "unknown type", encode(update(type="dateline.story.deleted")), "type", "unknown update type"
    ),
    Case("type not a string", encode({**update(), "type": 7}), "type", "unknown update type"),
    Case("empty id", encode(update(id="")), "id", "non-empty"),
    Case("id too long", encode(update(id="x" * 257)), "id", "at most 256"),
    Case("source a number", encode(update(source=12)), "source", "expected str, got int"),
    Case("time without offset", encode(update(time="2019-02-28T13:25:00")), "time", "offset"),
    Case("time in words", encode(update(time="yesterday")), "time", "RFC 3339"),
    Case("time date-only", encode(update(time="2019-02-28")), "time", "RFC 3339"),
    Case("timeprecision unknown", encode(update(timeprecision="hour")), "timeprecision", '"day"'),
    Case("expectedversion negative", encode(update(expectedversion=-1)), "expectedversion", ">= 0"),
    Case(
        "expectedversion as string", encode(update(expectedversion="3")), "expectedversion", "int"
    ),
    Case(
        "datacontenttype xml",
        encode(update(datacontenttype="text/xml")),
        "datacontenttype",
        "application/json",
    ),
    Case("producer sets version", encode(update(version=3)), "version", "set by the log"),
    Case("producer sets position", encode(update(position="1:1-0")), "position", "set by the log"),
    Case(
        "producer sets recordedtime",
        encode(update(recordedtime="2019-02-28T00:00:00Z")),
        "recordedtime",
        "set by the log",
    ),
    Case("extension not lowercase", encode(update(Traceparent="x")), "Traceparent", "a-z"),
    Case("extension starting with _", encode(update(_private=1)), "_private", "a-z"),
    # story ids
    Case("subject uppercase", encode(update(subject="Hanoi")), "subject", "story id"),
    Case("subject with space", encode(update(subject="hanoi summit")), "subject", "story id"),
    Case("subject with hash tag", encode(update(subject="{p1}")), "subject", "story id"),
    Case("subject with colon", encode(update(subject="a:b")), "subject", "story id"),
    Case("subject with star", encode(update(subject="a*")), "subject", "story id"),
    Case("subject with newline", encode(update(subject="hanoi\n")), "subject", "story id"),
    Case("subject look-alike", encode(update(subject="hаnoi")), "subject", "story id"),
    Case("subject 129 chars", encode(update(subject="a" * 129)), "subject", "story id"),
    Case("subject leading dash", encode(update(subject="-hanoi")), "subject", "story id"),
    Case("subject empty", encode(update(subject="")), "subject", "story id"),
    # payloads
    Case("data not an object", encode(update(data=[1])), "data", "expected object, got array"),
    Case("title missing", encode(update(data={})), "data.title", "required field is missing"),
    Case("title empty", _data(OPENED, title=""), "data.title", "non-empty"),
    Case("unknown data field", _data(OPENED, titel="x"), "data.titel", "unknown field"),
    Case(
        "people not strings", _data(OPENED, people=[1]), "data.people[0]", "expected str, got int"
    ),
    Case(
        "starts_at in words",
        _data(ANNOUNCED, starts_at="tomorrow"),
        "data.starts_at",
        "RFC 3339 date or datetime",
    ),
    Case(
        "starts_at impossible day",
        _data(ANNOUNCED, starts_at="2019-02-30"),
        "data.starts_at",
        '"2019-02-30"',
    ),
    Case(
        "starts_at hour 25",
        _data(ANNOUNCED, starts_at="2019-02-28T25:00:00Z"),
        "data.starts_at",
        "RFC 3339",
    ),
    Case(
        "item ref with space",
        _data(ANNOUNCED, item="press conference"),
        "data.item",
        "expected a ref",
    ),
    Case(
        "parent ref too long", _data(ANNOUNCED, parent="p" * 129), "data.parent", "expected a ref"
    ),
    Case(
        "participants[1] empty",
        _data(ANNOUNCED, participants=["a", ""]),
        "data.participants[1]",
        "non-empty",
    ),
    Case(
        "shift and starts_at",
        _data(RESCHEDULED, starts_at="2019-02-28"),
        "data.starts_at",
        "exactly one",
    ),
    Case(
        "neither shift nor starts_at",
        encode(update(RESCHEDULED, data={"item": "x"})),
        "data.starts_at",
        "exactly one",
    ),
    Case("shift of months", _data(RESCHEDULED, shift="P1M"), "data.shift", "ISO 8601 duration"),
    Case("shift empty duration", _data(RESCHEDULED, shift="PT"), "data.shift", "ISO 8601 duration"),
    # Found by schemathesis: it overflowed timedelta, a 500 instead of a refusal.
    Case(
        "shift beyond any calendar",
        _data(RESCHEDULED, shift="P9091244835477050DT3320H"),
        "data.shift",
        "duration too long",
    ),
    Case("link rel unknown", _data("dateline.story.linked", rel="cousin"), "data.rel", '"prior"'),
    Case("medium unknown", _data(STATEMENT, medium="tv"), "data.medium", '"remarks"'),
    Case(
        "via_interpreter as string",
        _data(STATEMENT, via_interpreter="yes"),
        "data.via_interpreter",
        "expected bool or null, got str",
    ),
    Case(
        "in_reply_to bad ref",
        _data(STATEMENT, in_reply_to="#1"),
        "data.in_reply_to",
        "expected a ref",
    ),
    Case(
        "language not BCP 47",
        _data(STATEMENT, language="english language"),
        "data.language",
        "format",
    ),
    Case(
        "result unknown",
        _data("dateline.outcome.reported", result="win"),
        "data.result",
        '"no_agreement"',
    ),
    Case(
        "expectation status unknown",
        _data("dateline.expectation.resolved", status="maybe"),
        "data.status",
        '"unmet"',
    ),
    Case(
        "correction without changes",
        _data("dateline.correction.issued", changes={}),
        "data.changes",
        "non-empty",
    ),
    Case(
        "correction of a non-field",
        _data("dateline.correction.issued", changes={"Title!": 1}),
        "data.changes",
        "not a payload field",
    ),
    Case(
        "retraction status unknown",
        _data("dateline.retraction.issued", status="deleted"),
        "data.status",
        '"withheld"',
    ),
    # the bytes
    Case("not JSON", b"{not json", "update", "not valid UTF-8 JSON"),
    Case("truncated", encode(update())[:-5], "update", "truncated"),
    Case("a JSON array", b"[]", "update", "expected a JSON object, got list"),
    Case("invalid UTF-8", encode(update(id="XX")).replace(b"XX", b"\xff\xfe"), "update", "UTF-8"),
    Case(
        "deeply nested JSON",
        encode(
            update(
                "dateline.correction.issued",
                data={"corrects": "x", "note": "n", "changes": {"title": "X"}},
            )
        ).replace(b'"X"', b"[" * 20_000 + b"]" * 20_000),
        "update",
        "nested too deeply",
    ),
    Case(
        "over 64 KiB",
        encode(update(data={"title": "x" * 70_000})),
        "update",
        "over the limit of 65536",
    ),
    # CloudEvents' type system (issue 20): no controls, noncharacters or surrogates in a
    # String attribute or a text of the contract; extension names of a-z and 0-9 only.
    Case("id with NUL", encode(update(id="a\u0000b")), "id", "U+0000"),
    Case(
        "source with DEL", encode(update(source="urn:feed:\u007f")), "source", "control character"
    ),
    Case(
        "dataschema with C1 control", encode(update(dataschema="x\u0085")), "dataschema", "U+0085"
    ),
    Case("extension with underscore", encode(update(trace_id="x")), "trace_id", "naming rules"),
    Case(
        "extension with a dash", encode({**update(), "trace-id": "x"}), "trace-id", "naming rules"
    ),
    Case(
        "extension value with newline", encode(update(traceparent="a\nb")), "traceparent", "U+000A"
    ),
    Case("title with newline", _data(OPENED, title="Summit\nends"), "data.title", "U+000A"),
    Case("title with tab", _data(OPENED, title="Summit\tends"), "data.title", "control character"),
    Case("person a noncharacter", _data(OPENED, people=["Kim\ufdd0"]), "data.people[0]", "U+FDD0"),
    Case(
        "statement with U+FFFE",
        _data(STATEMENT, text="I would \ufffe not"),
        "data.text",
        "noncharacter",
    ),
    Case(
        "statement with a plane noncharacter",
        _data(STATEMENT, text="x\U0010ffff"),
        "data.text",
        "U+10FFFF",
    ),
    Case(  # msgspec refuses it as it decodes: a surrogate never reaches a String
        "statement with a lone surrogate",
        encode(update(STATEMENT)).replace(b'"text":"', b'"text":"\\udc00'),
        "update",
        "surrogate",
    ),
    Case(
        "correction to a text with a control",
        encode(
            update(
                "dateline.correction.issued",
                data={"corrects": "x", "changes": {"text": "a\u0007b"}, "note": "n"},
            )
        ),
        "data",
        "changes.text: U+0007",
    ),
]
