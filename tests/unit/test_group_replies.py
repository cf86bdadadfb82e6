"""How a group read's reply becomes entries: every shape the server may send. Pure: no
server."""

from __future__ import annotations

from dateline.runtime.groups import _raw_entries


def test_a_log_entry_of_one_field_and_entries_of_other_shapes() -> None:
    reply = [
        (
            b"bench:log:0",
            [
                (b"1-0", [b"__data__", b"{}"]),  # a log entry: one field, a flat list
                (b"2-0", [b"a", b"1", b"b", b"2"]),  # more fields
                (b"3-0", {b"a": b"1", b"b": b"2"}),  # fields as a map, two of them
                (b"4-0", None),  # deleted while pending
            ],
        ),
        (b"bench:log:1", [(b"5-0", None)]),  # nothing left to hand out
    ]
    assert _raw_entries(reply) == {
        "bench:log:0": [
            ("1-0", {b"__data__": b"{}"}),
            ("2-0", {b"a": b"1", b"b": b"2"}),
            ("3-0", {b"a": b"1", b"b": b"2"}),
        ]
    }


def test_streams_as_a_map() -> None:
    reply = {b"bench:log:2": [(b"6-0", [b"__data__", b"{}"])]}
    assert _raw_entries(reply) == {"bench:log:2": [("6-0", {b"__data__": b"{}"})]}
