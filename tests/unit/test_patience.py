"""`patiently` waits out what an outage raises, a cluster finding its feet among it, and
raises at once what is no outage. Pure: the attempts raise what redis-py raises."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from dateline.runtime import patience


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patience, "FIRST_S", 0.0)


@pytest.mark.parametrize(
    "error",
    [
        RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        ClusterDownError("CLUSTERDOWN The cluster is down"),
        SlotNotCoveredError("Slot 1234 is not covered by the cluster."),
        TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
    ],
)
async def test_an_outage_is_waited_out(error: Exception) -> None:
    tries: list[int] = []

    async def attempt() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise error
        return "answered"

    assert await patience.patiently("a step", attempt) == "answered"
    assert len(tries) == 3


@pytest.mark.parametrize(
    "error",
    [AuthenticationError("WRONGPASS invalid username-password pair"), ResponseError("ERR no")],
)
async def test_what_is_no_outage_is_raised_at_once(error: Exception) -> None:
    tries: list[int] = []

    async def attempt() -> str:
        tries.append(1)
        raise error

    with pytest.raises(type(error)):
        await patience.patiently("a step", attempt)
    assert len(tries) == 1
