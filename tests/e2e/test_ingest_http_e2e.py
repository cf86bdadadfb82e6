"""A real `dateline ingest` process: the Hanoi story over HTTP, and concurrent retries."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import VALKEY, start_server
from tests.e2e.processes import DATELINE, ingest_process, published_with_cli, records
from tests.projection_helpers import HANOI_UPDATES, HANOI_VERSION

ROOT = Path(__file__).resolve().parents[2]
HANOI = ROOT / "examples" / "hanoi-summit-2019.ndjson"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], str]]:
    server = start_server(VALKEY, tmp_path / "redis")
    env = {**os.environ, "REDIS_URL": server.url, "DATELINE_PREFIX": "e2e"}
    added = subprocess.run(
        [str(DATELINE), "feeds", "add", "wire-a", "--source", "urn:feed:wire-a"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = added.stdout.strip()
    assert token.startswith("dl_")
    assert "not shown again" in added.stderr
    try:
        with ingest_process(env, tmp_path / "ingest.log") as base:
            yield base, env, token
    finally:
        server.stop()


def test_the_hanoi_story_over_http_gives_the_same_log(
    service: tuple[str, dict[str, str], str], tmp_path: Path
) -> None:
    base, env, token = service
    headers = {"authorization": f"Bearer {token}", "content-type": "application/x-ndjson"}
    r = httpx.post(f"{base}/v1/updates", content=HANOI.read_bytes(), headers=headers)
    assert r.status_code == 202
    assert {x["status"] for x in r.json()["results"]} == {"appended"}
    again = httpx.post(f"{base}/v1/updates", content=HANOI.read_bytes(), headers=headers)
    assert again.status_code == 200  # all duplicates
    # The same story published with the CLI into a fresh data dir, for comparison.
    cli_env = published_with_cli(HANOI, tmp_path / "cli")
    http_records = records(env, "hanoi-summit-2019")
    assert len(http_records) == HANOI_VERSION
    assert http_records == records(cli_env, "hanoi-summit-2019")


def test_concurrent_retries_of_one_batch_land_each_update_once(
    service: tuple[str, dict[str, str], str],
) -> None:
    base, env, token = service
    docs = [json.loads(x) for x in HANOI.read_bytes().splitlines() if x.strip()]
    body = json.dumps(docs).encode()
    headers = {
        "authorization": f"Bearer {token}",
        "content-type": "application/cloudevents-batch+json",
    }

    async def retries() -> list[int]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            replies = await asyncio.gather(
                *(client.post("/v1/updates", content=body, headers=headers) for _ in range(20))
            )
        return [r.status_code for r in replies]

    statuses = asyncio.run(retries())
    assert set(statuses) <= {200, 202}
    assert statuses.count(202) >= 1
    client = redis.Redis.from_url(env["REDIS_URL"])
    stories = {"hanoi-summit-2019": HANOI_VERSION, "cohen-hearing-2019": 4}
    for story, count in stories.items():
        key = next(k for k in client.scan_iter(match=f"e2e:*:story:{story}"))
        versions = [json.loads(r)["version"] for r in client.lrange(key, 0, -1)]
        assert versions == list(range(1, count + 1))
    logged = sum(client.xlen(k) for k in client.scan_iter(match="e2e:*:log", _type="stream"))
    assert logged == HANOI_UPDATES
    client.close()
