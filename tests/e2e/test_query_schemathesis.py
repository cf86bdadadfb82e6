"""schemathesis against the query service's OpenAPI document: no 5xx, responses conform."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from dateline.store.layout import Keys
from dateline.store.log import Log
from tests.conftest import VALKEY, start_server
from tests.e2e.processes import background, http_service
from tests.projection_helpers import HANOI
from tests.readers import add_reader

# 400 names a bad parameter, 401 a missing token, 404 an unknown story, 503 a min_position
# not reached in time.
CONFIG = SchemathesisConfig.from_str("""
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "404", "503"]
""")


@pytest.fixture(scope="module")
def query(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """Real projector and query processes over the Hanoi story on a real server, and the
    header of an ops reader (it may call every route)."""
    server = start_server(VALKEY, tmp_path_factory.mktemp("query-redis"))
    logs = tmp_path_factory.mktemp("query-logs")
    env = {**os.environ, "REDIS_URL": server.url, "DATELINE_PREFIX": "sq"}
    # As fast as it can: the rate limit (its own tests) would answer most with 429.
    env["DATELINE_RATE_LIMIT"] = "0"

    async def publish() -> None:
        client = aioredis.Redis.from_url(server.url)
        await Log(client, Keys("sq", 8)).append([x for x in HANOI.read_bytes().splitlines() if x])
        await client.aclose()

    asyncio.run(publish())
    auth = add_reader(env, "sq")
    os.environ["TEST_SQ_READER_TOKEN"] = env["TEST_READER_TOKEN"]
    try:
        with (
            background(["projector"], env, logs / "projector.log"),
            http_service("query", env, logs / "query.log") as base,
        ):
            yield base, auth
    finally:
        server.stop()


def _schema() -> Any:
    from dateline.query.app import create_app  # noqa: PLC0415
    from dateline.store.config import Settings  # noqa: PLC0415

    app = create_app(Settings(None, data_dir=None), "redis://unused")  # type: ignore[arg-type]
    return schemathesis.openapi.from_dict(app.openapi_schema.to_schema(), config=CONFIG)


schema = _schema()


@schema.auth()
class ReaderToken:
    """An ops reader's token on every case (the `query` fixture makes it); schemathesis
    also sends cases without it, and checks they are refused."""

    def get(self, case: Any, context: Any) -> str:
        return os.environ.get("TEST_SQ_READER_TOKEN", "not-yet")  # the fixture sets it

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()  # type: ignore[untyped-decorator]  # schemathesis's, unannotated
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: Any, query: tuple[str, dict[str, str]]) -> None:
    base, _ = query
    if case.query and "wait" in case.query:
        case.query["wait"] = 0.1  # an unreachable min_position would hold each example 30 s
    response = case.call(base_url=base, timeout=15)
    # The one 5xx the document promises: 503 when min_position is not reached in time.
    # Any other server error fails here; the rest of the checks run on every response.
    if response.status_code == 503:
        assert response.json()["type"] == "urn:dateline:problem:not-reached", response.text
        assert case.query and case.query.get("min_position")
    excluded = [schemathesis.checks.not_a_server_error] if response.status_code == 503 else []
    # Excluded too: "a schema-valid request is accepted". A position in a partition the
    # log does not have, or a story id that is well-formed but unknown, is valid to the
    # schema and still refused (400 / 404) for reasons no schema states.
    case.validate_response(
        response, excluded_checks=[*excluded, schemathesis.checks.positive_data_acceptance]
    )


def test_the_served_document_is_the_one_tested(query: tuple[str, dict[str, str]]) -> None:
    served = httpx.get(f"{query[0]}/v1/openapi.json").json()
    assert served["paths"].keys() == schema.raw_schema["paths"].keys()
