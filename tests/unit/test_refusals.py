"""A server that refuses writes for now (`connection.refuses_writes`): told apart from a
bug by its error reply, as redis-py parses the server's words. Pure: the replies are
the servers' own texts, no server; `tests/integration/test_kit.py` and `test_load.py`
meet them on real ones."""

from __future__ import annotations

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient
from redis._parsers.base import BaseParser

from dateline.store.connection import out_of_room, refuses_writes
from dateline.web.problems import handlers

OOM = "OOM command not allowed when used memory > 'maxmemory'."
MISCONF = (
    "MISCONF Errors writing to the AOF file: No space left on device. Commands that may "
    "modify the data set are disabled"
)
NOREPLICAS = "NOREPLICAS Not enough good replicas to write."
READONLY = "READONLY You can't write against a read only replica."
# Redis 6.2 wraps what a script's call met; Redis 7 and Valkey pass it on as it is.
IN_A_SCRIPT_6 = (
    "ERR Error running script (call to f_0b1c): @user_script:12: @user_script: 12: -OOM "
    "command not allowed when used memory > 'maxmemory'."
)
IN_A_SCRIPT_7 = f"{OOM} script: 0b1c, on @user_script:12."
# redis-py's pipelines put the command first (`Pipeline.annotate_exception`).
IN_A_PIPELINE = (
    f"Command # 1 (HSETNX dateline:config partitions 8) of pipeline caused error: ({NOREPLICAS!r},)"
)
BUGS = [
    "ERR wrong number of arguments for 'xadd' command",
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "NOSCRIPT No matching script. Please use EVAL.",
    "ERR Error running script (call to f_0b1c): @user_script:3: user_script:3: bad arg",
    "ERR value is not an integer or out of range",
]


def parsed(reply: str) -> Exception:
    error: Exception = BaseParser.parse_error(reply)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    return error


@pytest.mark.parametrize(
    ("reply", "room"),
    [
        (OOM, True),
        (MISCONF, True),
        (NOREPLICAS, False),
        (READONLY, False),
        (IN_A_SCRIPT_6, True),
        (IN_A_SCRIPT_7, True),
        (IN_A_PIPELINE, False),
    ],
)
def test_a_server_refusing_writes_is_told_apart(reply: str, room: bool) -> None:
    assert refuses_writes(parsed(reply))
    assert out_of_room(parsed(reply)) is room


@pytest.mark.parametrize("reply", BUGS)
def test_other_error_replies_are_not_refusals(reply: str) -> None:
    assert not refuses_writes(parsed(reply))
    assert not out_of_room(parsed(reply))


def test_what_is_no_error_reply_is_not_a_refusal() -> None:
    assert not refuses_writes(ValueError(OOM))
    assert not refuses_writes(ConnectionError(NOREPLICAS))


@pytest.mark.parametrize(
    ("reply", "kind", "retry_after"),
    [
        (OOM, "server-full", "30"),
        (MISCONF, "server-full", "30"),
        (NOREPLICAS, "refusing-writes", "1"),
        (READONLY, "refusing-writes", "1"),
        (BUGS[0], "internal", None),
    ],
)
def test_a_feed_is_told_to_send_again_not_that_we_broke(
    reply: str, kind: str, retry_after: str | None
) -> None:
    error = parsed(reply)

    @get("/")
    async def fails() -> None:
        raise error

    with TestClient(app=Litestar([fails], exception_handlers=handlers("ingest"))) as http:
        r = http.get("/")
    assert r.json()["type"] == f"urn:dateline:problem:{kind}"
    assert r.status_code == (500 if retry_after is None else 503), r.text
    assert r.headers.get("retry-after") == retry_after
    if retry_after is not None:
        assert "not written" in r.json()["detail"]
