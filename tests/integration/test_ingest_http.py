"""HTTP ingest on a real Redis: results per update, and refusals that name the problem."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from dateline.ingest.app import create_app
from dateline.ingest.credentials import Credentials
from dateline.ingest.wire import CE_BATCH, CE_JSON
from dateline.store.config import Settings
from dateline.store.log import Log
from tests.conftest import keys_written
from tests.factories import encode, update
from tests.invalid_cases import CASES

SOURCE = "urn:feed:test"
DESK, PLANNER = "urn:feed:desk", "urn:feed:planner"


class Client(NamedTuple):
    http: AsyncTestClient[Any]
    token: str
    log: Log

    async def post(
        self, body: bytes, content_type: str = CE_JSON, token: str | None = None, **params: Any
    ) -> Any:
        headers = {
            "content-type": content_type,
            "authorization": f"Bearer {self.token if token is None else token}",
        }
        return await self.http.post("/v1/updates", content=body, headers=headers, params=params)


@pytest.fixture
async def client(log: Log, redis_url: str) -> AsyncIterator[Client]:
    settings = Settings(
        redis_url,
        data_dir=None,  # type: ignore[arg-type]  # an embedded server's: none here
        prefix=log.keys.prefix,
        partitions=log.keys.partitions,
    )
    token = await Credentials(log.redis, log.keys.prefix).add("wire-a", SOURCE)
    async with AsyncTestClient(app=create_app(settings, redis_url)) as http:
        yield Client(http, token, log)


async def written(log: Log) -> list[bytes]:
    """Keys appends wrote (credentials and config are not appends)."""
    return [k for k in await keys_written(log) if b":feeds" not in k]


async def test_one_update_is_appended(client: Client) -> None:
    r = await client.post(encode(update(id="a1")))
    assert r.status_code == 202
    [result] = r.json()["results"]
    assert (result["status"], result["version"]) == ("appended", 1)
    again = await client.post(encode(update(id="a1")))
    assert again.status_code == 200
    assert again.json()["results"][0]["status"] == "duplicate"
    assert "differs" not in again.json()["results"][0]


async def test_an_id_used_again_for_other_content_is_answered_and_logged(client: Client) -> None:
    """The contract's answer (200, a duplicate, the original's place), which also names
    what differs; on-call sees it in the logs and in a counter."""
    await client.post(encode(update(id="a2")))
    counted = REGISTRY.get_sample_value("dateline_reused_ids_total", {"service": "ingest"}) or 0
    with capture_logs() as logs:
        again = await client.post(encode(update(id="a2", time="2019-02-28T16:00:00+07:00")))
    assert again.status_code == 200
    [result] = again.json()["results"]
    assert (result["status"], result["version"], result["differs"]) == ("duplicate", 1, ["time"])
    assert "differs in time" in result["reason"]
    [warned] = [e for e in logs if e["log_level"] == "warning"]
    assert (warned["update"], warned["differs"], warned["feed"]) == ("a2", "time", "wire-a")
    assert (
        REGISTRY.get_sample_value("dateline_reused_ids_total", {"service": "ingest"}) == counted + 1
    )


async def test_batches_and_ndjson(client: Client) -> None:
    docs = [update(id=f"b{i}") for i in range(3)]
    r = await client.post(json.dumps(docs).encode(), CE_BATCH)
    assert r.status_code == 202
    assert [x["version"] for x in r.json()["results"]] == [1, 2, 3]
    nd = b"\n".join(encode(update(id=f"n{i}")) for i in range(2)) + b"\n"
    r = await client.post(nd, "application/x-ndjson")
    assert [x["version"] for x in r.json()["results"]] == [4, 5]


async def test_conflict_is_409_with_the_current_version(client: Client) -> None:
    await client.post(encode(update()))
    r = await client.post(encode(update(expectedversion=0)))
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["errors"][0]["field"] == "expectedversion"
    assert body["results"][0]["current_version"] == 1


async def test_atomic_batch_over_http(client: Client) -> None:
    docs = [update(id="x1"), update(id="x2", expectedversion=9)]
    r = await client.post(json.dumps(docs).encode(), CE_BATCH, atomic="true")
    assert r.status_code == 409
    assert [x["status"] for x in r.json()["results"]] == ["aborted", "conflict"]
    assert await written(client.log) == []


async def test_a_parameter_ingest_does_not_take_is_refused_and_writes_nothing(
    client: Client,
) -> None:
    """`?atomc=true` read as absent would write the batch's good updates alone."""
    docs = [update(id="y1"), update(id="y2", expectedversion=9)]
    r = await client.post(json.dumps(docs).encode(), CE_BATCH, atomc="true")
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"] == ("atomc: not a parameter of POST /v1/updates (it takes atomic)")
    r = await client.post(encode(update(id="y3")), dry_run="true")
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith("dry_run: not a parameter")
    assert await written(client.log) == []


class Hostile(NamedTuple):
    name: str
    body: bytes
    content_type: str
    status: int
    says: str
    token: str | None = None


def hostile_cases(token_for: dict[str, str]) -> list[Hostile]:
    ok = encode(update())
    deep = encode(
        update(
            "dateline.correction.issued",
            data={"corrects": "x", "note": "n", "changes": {"title": "PLACEHOLDER"}},
        )
    ).replace(b'"PLACEHOLDER"', b"[" * 20_000 + b"]" * 20_000)
    cases = [
        Hostile(
            f"contract: {c.name}",
            c.raw,
            CE_JSON,
            413 if "64 KiB" in c.name else 422,
            c.field if "64 KiB" not in c.name else "65536",
        )
        for c in CASES
    ]
    return [
        *cases,
        Hostile("no token", ok, CE_JSON, 401, "Bearer", token=""),
        Hostile("wrong token", ok, CE_JSON, 401, "valid, unrevoked", token="dl_not-a-real-token"),
        Hostile("not our token format", ok, CE_JSON, 401, "Bearer", token="hunter2"),
        Hostile("revoked token", ok, CE_JSON, 401, "unrevoked", token=token_for["revoked"]),
        Hostile("text/plain", ok, "text/plain", 415, "application/cloudevents+json"),
        Hostile("plain application/json", ok, "application/json", 415, "cloudevents"),
        Hostile("no content type", ok, "", 415, "none"),
        Hostile("batch that is not JSON", b"[{oops", CE_BATCH, 400, "JSON array"),
        Hostile("batch that is an object", ok, CE_BATCH, 400, "JSON array"),
        Hostile("empty batch", b"[]", CE_BATCH, 400, "no update"),
        Hostile("empty ndjson", b"\n\n", "application/x-ndjson", 400, "no update"),
        Hostile("batch of a string", b'["x"]', CE_BATCH, 422, "expected a JSON object"),
        Hostile("1,001 updates", json.dumps([update()] * 1001).encode(), CE_BATCH, 413, "1001"),
        Hostile(
            "over 4 MiB", b"[" + b",".join([ok + b" " * 60_000] * 72) + b"]", CE_BATCH, 413, ""
        ),
        Hostile("deeply nested JSON", deep, CE_JSON, 422, "update"),
        Hostile("truncated body", ok[: len(ok) // 2], CE_JSON, 422, "truncated"),
        Hostile(
            "a source the token does not own",
            encode(update(source="urn:feed:other")),
            CE_JSON,
            403,
            "urn:feed:other",
        ),
        Hostile(
            "a story outside the token's prefix",
            encode(update(subject="other-story", source=DESK)),
            CE_JSON,
            403,
            "hanoi-",
            token=token_for["prefixed"],
        ),
        Hostile(
            "a type the token may not publish",
            encode(update("dateline.story.concluded", source=PLANNER)),
            CE_JSON,
            403,
            "dateline.story.concluded",
            token=token_for["typed"],
        ),
        Hostile(
            "one forbidden update in a batch",
            json.dumps([update(), update(source="urn:feed:other")]).encode(),
            CE_BATCH,
            403,
            "nothing was written",
        ),
    ]


async def test_hostile_inputs_are_refused_by_name_and_write_nothing(client: Client) -> None:
    creds = Credentials(client.log.redis, client.log.keys.prefix)
    revoked = await creds.add("gone", "urn:feed:gone")
    await creds.revoke("gone")
    tokens = {
        "revoked": revoked,
        # A source belongs to one feed at a time (a revoked one's is free again).
        "prefixed": await creds.add("desk", DESK, story_prefixes=["hanoi-"]),
        "typed": await creds.add("planner", PLANNER, types=["dateline.schedule.announced"]),
    }
    cases = hostile_cases(tokens)
    assert len(cases) >= 60
    for case in cases:
        r = await client.post(case.body, case.content_type, token=case.token)
        assert r.status_code == case.status, (case.name, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/problem+json"), case.name
        assert case.says in r.text, (case.name, r.text[:300])
        assert await written(client.log) == [], case.name
        assert (await client.http.get("/healthz")).status_code == 200
    for method_case in ("GET", "PUT"):
        r = await client.http.request(method_case, "/v1/updates")
        assert r.status_code == 405
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (await client.http.get("/v1/nothing")).status_code == 404


async def test_invalid_updates_name_every_bad_field(client: Client) -> None:
    docs = [update(), update(subject="Bad Id"), update(time="yesterday")]
    r = await client.post(json.dumps(docs).encode(), CE_BATCH)
    assert r.status_code == 422
    body = r.json()
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "subject"), (2, "time")]
    assert [x["status"] for x in body["results"]] == ["appended", "invalid", "invalid"]


def _correction_of_another_source(uid: str) -> bytes:
    return encode(
        update(
            "dateline.correction.issued",
            id=uid,
            data={
                "corrects": "theirs-1",
                "target_source": "urn:feed:wire-b",
                "changes": {"title": "Forged"},
                "note": "n",
            },
        )
    )


async def test_rule_5_another_sources_update_needs_the_editor_right(client: Client) -> None:
    """Without it: 403 naming rule 5 and the field, nothing written. With it (an editor
    feed): appended, and the log records that its writer held the right."""
    r = await client.post(_correction_of_another_source("c-1"))
    assert r.status_code == 403, r.text
    [problem] = r.json()["errors"]
    assert problem["field"] == "data.target_source" and "rule 5" in problem["detail"]
    assert await written(client.log) == []
    creds = Credentials(client.log.redis, client.log.keys.prefix)
    editor = await creds.add("desk", SOURCE + ":desk", editor=True)
    doc = msgspec.json.decode(_correction_of_another_source("c-2"))
    doc["source"] = SOURCE + ":desk"
    r = await client.post(encode(doc), token=editor)
    assert r.status_code == 202, r.text
    [record] = await client.log.read_story_json("hanoi-summit-2019")
    assert msgspec.json.decode(record)["editor"] is True
    own = update("dateline.story.opened", id="o-1")  # an editor's every update says so
    await client.post(encode(own))
    plain = msgspec.json.decode((await client.log.read_story_json("hanoi-summit-2019"))[-1])
    assert "editor" not in plain


async def test_a_producer_cannot_claim_the_editor_right(client: Client) -> None:
    r = await client.post(encode(update(editor=True)))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "editor"


async def test_a_control_character_in_a_path_is_a_4xx_problem(client: Client) -> None:
    r = await client.http.post("/v1/updates%00", content=b"{}")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
