"""How the log reads the server's replies around an append: what `WAIT` confirmed, and
a refusal that says the log is moving. Pure: no server."""

from __future__ import annotations

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from dateline.store.layout import Keys
from dateline.store.log import Log, LogMoving, _confirmed, _moving, _wire
from tests.factories import encode, update


def test_wait_counts_what_it_says() -> None:
    assert _confirmed(1) == 1
    assert _confirmed(b"2") == 2


def test_a_wait_ended_by_a_primary_stepping_down_confirms_nothing() -> None:
    unblocked = ResponseError(
        "UNBLOCKED force unblock from blocking operation, instance state changed "
        "(master -> replica?)"
    )
    assert _confirmed(unblocked) == 0
    # On a cluster: the write was redirected to the slot's new master, the WAIT aimed at
    # the old one, a replica now.
    demoted = ResponseError(
        "WAIT cannot be used with replica instances. Please also note that if a replica is "
        "configured to be writable (which is not the default) writes to replicas are just "
        "local and are not propagated."
    )
    assert _confirmed(demoted) == 0


@pytest.mark.parametrize(
    "error",
    [
        ResponseError("NOPERM User ingest has no permissions to run the 'wait' command"),
        RedisConnectionError("Connection closed by server."),
    ],
)
def test_any_other_error_of_the_wait_is_raised_not_taken_for_a_slow_replica(
    error: Exception,
) -> None:
    with pytest.raises(type(error)):
        _confirmed(error)


def test_a_relocated_refusal_is_told_apart_even_wrapped_by_a_pipeline() -> None:
    plain = ResponseError("RELOCATED is being moved to redis://x (dateline migrate)")
    wrapped = ResponseError(
        "Command # 1 (EVAL -- Append a batch of story updates to the log, atomically per "
        "call. 3 k1 k2 k3) of pipeline caused error: ('RELOCATED has moved to redis://y',)"
    )
    assert isinstance(found := _moving(plain), LogMoving)
    assert str(found) == "is being moved to redis://x (dateline migrate)"
    assert str(_moving(wrapped)) == "has moved to redis://y"
    assert _moving(ResponseError("SEALED dateline_append_abc")) is None
    assert _moving(ResponseError("ERR something RELOCATED later in the text")) is None


def test_a_batch_goes_flat_to_this_release_and_a_table_an_update_to_an_older_function() -> None:
    log = Log(aioredis.Redis(), Keys("t", 4))  # not connected: prepare does no I/O
    sent = [encode(update(subject=f"s{i % 2}", id=f"u{i}")) for i in range(3)]
    args = log.prepare(sent, atomic=False).args
    flat = msgspec.msgpack.decode(args[1])
    assert len(flat) == 21 and isinstance(flat[4], str)  # seven words an update
    assert _wire(None, args) is args  # the script of this release
    assert _wire("dateline_append_flat_0123456789ab", args) is args
    older = _wire("dateline_append_0123456789ab", args)
    rows = msgspec.msgpack.decode(older[1])
    assert rows == [flat[0:7], flat[7:14], flat[14:21]]
    assert older[0] == args[0] and older[2] == args[2]
