"""A cluster mid-failover, as a feed or a dashboard sees it: a 503 to retry, not a 500.
Pure: a route that raises what redis-py's cluster client raises, no server."""

from __future__ import annotations

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient
from redis.exceptions import ClusterDownError, SlotNotCoveredError

from dateline.web.problems import handlers


@pytest.mark.parametrize(
    "error",
    [
        ClusterDownError("CLUSTERDOWN The cluster is down"),
        SlotNotCoveredError("Slot 1234 is not covered by the cluster."),
    ],
)
def test_a_shard_without_a_master_is_a_503_with_retry_after(error: Exception) -> None:
    @get("/")
    async def fails() -> None:
        raise error

    with TestClient(app=Litestar([fails], exception_handlers=handlers("ingest"))) as http:
        r = http.get("/")
    assert r.status_code == 503, r.text
    assert r.json()["type"] == "urn:dateline:problem:unavailable"
    assert int(r.headers["retry-after"]) > 0
