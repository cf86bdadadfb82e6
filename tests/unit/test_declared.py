"""A cluster's commit names every key it writes (`commit.declared`), each once."""

from __future__ import annotations

from dateline.projector.commit import DECLARED, declared
from dateline.store.readmodels import Command


def test_every_key_of_the_commands_follows_the_states_once() -> None:
    commands: list[Command] = [
        ("MSET", "rm:{p0}:story:a", b"{}", "rm:{p0}:story:b", b"{}"),
        ("RPUSH", b"rm:{p0}:timeline:a", b"x"),
        ("HSET", "rm:{p0}:index", "a", b"{}", "b", b"{}"),
        ("ZADD", "rm:{p0}:index:by_time", 1.0, "a"),
        ("HSET", "rm:{p0}:index", "a", b"{}"),
        ("XACK", "{p0}:log", "projector-v1", "1-0"),
        ("ADVANCE", "rm:{p0}:checkpoint", "0", "{p0}:log", "projector-v1", "SPUBLISH", "c", ""),
    ]
    keys, fences = declared(["rm:{p0}:story:a", "rm:{p0}:story:b"], commands)
    assert keys == [
        "rm:{p0}:story:a",
        "rm:{p0}:story:b",
        "rm:{p0}:timeline:a",
        "rm:{p0}:index",
        "rm:{p0}:index:by_time",
        "{p0}:log",
        "rm:{p0}:checkpoint",
    ]
    assert fences == [DECLARED] * 5  # the states keep their own fences, before these
