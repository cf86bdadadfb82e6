"""What a duplicate's content differs in from its original (`store/reused.py`)."""

from __future__ import annotations

from dateline.store.reused import differences, said

ORIGINAL = (
    b'{"specversion":"1.0","id":"w-1","source":"urn:feed:wire","type":"dateline.story.opened",'
    b'"subject":"hanoi","time":"2019-02-28T13:25:00+07:00","data":{"title":"Summit",'
    b'"people":["Trump","Kim"]},"x-desk":{"a":1,"b":[true]},"version":3,'
    b'"position":"2:1-0","recordedtime":"2019-02-28T06:25:00.000Z","editor":true,'
    b'"seal":"00"}'
)


def test_the_same_update_differs_in_nothing_whatever_the_log_added() -> None:
    sent = ORIGINAL.split(b',"version"')[0] + b"}"
    assert differences(ORIGINAL, sent) == []


def test_the_order_of_members_and_spaces_are_not_content() -> None:
    sent = (
        b'{ "x-desk": {"b": [true], "a": 1}, "data": {"people": ["Trump", "Kim"], '
        b'"title": "Summit"}, "time": "2019-02-28T13:25:00+07:00", "subject": "hanoi", '
        b'"type": "dateline.story.opened", "source": "urn:feed:wire", "id": "w-1", '
        b'"specversion": "1.0" }'
    )
    assert differences(ORIGINAL, sent) == []


def test_members_of_data_are_named_and_the_rest_by_attribute() -> None:
    sent = (
        b'{"specversion":"1.0","id":"w-1","source":"urn:feed:wire","type":"dateline.story.opened",'
        b'"subject":"hanoi","time":"2019-02-28T14:25:00+07:00","data":{"title":"Summit ends",'
        b'"people":["Kim","Trump"],"place":"Hanoi"}}'
    )
    assert differences(ORIGINAL, sent) == [
        "data.people",
        "data.place",
        "data.title",
        "time",
        "x-desk",
    ]


def test_json_values_of_other_kinds_differ_where_python_calls_them_equal() -> None:
    one = b'{"id":"w-1","data":{"n":1,"flag":true,"list":[1]}}'
    other = b'{"id":"w-1","data":{"n":1.0,"flag":1,"list":[true]}}'
    assert differences(one, other) == ["data.flag", "data.list", "data.n"]
    assert differences(one, one) == []


def test_data_of_another_kind_is_named_whole() -> None:
    assert differences(b'{"data":{"a":1}}', b'{"data":[1]}') == ["data"]


def test_the_reason_names_what_differs_and_what_to_do() -> None:
    reason = said(["data.title", "time"])
    assert "differs in data.title, time" in reason
    assert "the log keeps the first" in reason and "id of its own" in reason
