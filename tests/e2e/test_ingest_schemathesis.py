"""schemathesis against the ingest service's own OpenAPI document: no 5xx, responses conform."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from dateline.ingest.credentials import Credentials
from dateline.ingest.openapi import document
from tests.conftest import VALKEY, start_server
from tests.e2e.processes import ingest_process

# 413 (over the limits) and 415 are how this API refuses schema-violating bodies too.
CONFIG = SchemathesisConfig.from_str("""
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "413", "415", "422"]
""")
schema = schemathesis.openapi.from_dict(document(), config=CONFIG)


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real `dateline ingest` process on a real server, and a feed token for it."""
    server = start_server(VALKEY, tmp_path_factory.mktemp("ingest-redis"))
    client = aioredis.Redis.from_url(server.url)
    token = asyncio.run(Credentials(client, "st").add("feed", "urn:feed:test"))
    env = {**os.environ, "REDIS_URL": server.url, "DATELINE_PREFIX": "st"}
    # As fast as it can: the rate limit (its own tests) would answer most with 429.
    env["DATELINE_RATE_LIMIT"] = "0"
    try:
        with ingest_process(env, tmp_path_factory.mktemp("ingest-logs") / "ingest.log") as base:
            yield base, token
    finally:
        server.stop()


@pytest.mark.slow  # 37 s on a slow VM: fuzzing, in the slow group (which CI runs too)
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: Any, ingest: tuple[str, str]) -> None:
    base, token = ingest
    # Excluded: "a schema-valid request is accepted". Valid updates are refused for reasons
    # no schema states: this token may publish only as urn:feed:test (403), expectedversion
    # conflicts (409). Server errors and response conformance are all still checked.
    case.call_and_validate(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )
