"""CloudEvents binary content mode on `POST /v1/updates`, on a real Redis, with requests
made by the official CloudEvents Python SDK as well as by hand."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from dateline.store.log import Log
from tests.factories import DATA, update
from tests.integration.test_ingest_http import SOURCE, Client, client, written

__all__ = ["client"]  # the fixture, shared with the structured-mode tests


def sdk_event(**attrs: Any) -> CloudEvent:
    doc = update("dateline.statement.made", **attrs)
    data = doc.pop("data")
    doc["time"] = datetime.fromisoformat(doc["time"])
    return CloudEvent({**doc, "datacontenttype": "application/json"}, data)


async def post(client: Client, headers: dict[str, str], body: bytes, **params: Any) -> Any:
    headers = {**headers, "authorization": f"Bearer {client.token}"}
    return await client.http.post("/v1/updates", content=body, headers=headers, params=params)


async def stored(log: Log, story: str = "hanoi-summit-2019") -> list[dict[str, Any]]:
    return [msgspec.json.decode(r) for r in await log.read_story_json(story)]


async def test_the_sdk_posts_in_binary_and_structured_modes_and_both_land_alike(
    client: Client,
) -> None:
    """The same event, from the SDK in each mode: the binary one is appended, the
    structured one (same source and id) is its duplicate, and the record holds what
    the SDK sent, a percent-encoded extension decoded."""
    event = sdk_event(id="sdk-1", traceparent="00-caf\u00e9 au lait-01")
    message = ce_http.to_binary(event, JSONFormat())
    assert message.headers["ce-traceparent"] == "00-caf%C3%A9%20au%20lait-01"  # the SDK's
    first = await post(client, message.headers, message.body)
    assert first.status_code == 202, first.text
    structured = ce_http.to_structured(event, JSONFormat())
    again = await post(client, structured.headers, structured.body)
    assert again.status_code == 200
    assert again.json()["results"][0]["status"] == "duplicate"
    [record] = await stored(client.log)
    assert record["traceparent"] == "00-caf\u00e9 au lait-01"
    assert record["data"] == DATA["dateline.statement.made"]
    assert (record["id"], record["source"], record["datacontenttype"]) == (
        "sdk-1",
        SOURCE,
        "application/json",
    )


async def test_binary_mode_takes_expectedversion_as_a_number(client: Client) -> None:
    message = ce_http.to_binary(sdk_event(id="v-1", expectedversion=0), JSONFormat())
    assert (await post(client, message.headers, message.body)).status_code == 202
    message = ce_http.to_binary(sdk_event(id="v-2", expectedversion=0), JSONFormat())
    conflict = await post(client, message.headers, message.body)
    assert conflict.status_code == 409
    assert conflict.json()["results"][0]["current_version"] == 1


def by_hand(**headers: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": "h-1",
        "ce-source": SOURCE,
        "ce-type": "dateline.story.opened",
        "ce-subject": "hanoi-summit-2019",
        "ce-time": "2019-02-28T13:25:00%2B07:00",
        "content-type": "application/json",
        **headers,
    }


async def test_refusals_name_the_header_or_the_type_and_write_nothing(client: Client) -> None:
    body = msgspec.json.encode({"title": "Summit"})
    cases = [
        (by_hand(**{"content-type": "text/plain"}), body, 415, "application/json"),
        (by_hand(**{"ce-Bad_Name": "x"}), body, 400, "ce-bad_name: CloudEvents attribute"),
        (by_hand(**{"ce-datacontenttype": "application/json"}), body, 400, "ce-datacontenttype"),
        (by_hand(**{"ce-subject": "%FF%FE"}), body, 400, "ce-subject: not UTF-8"),
        (by_hand(), b"{not json", 400, "not JSON data"),
        (by_hand(**{"ce-type": "dateline.story.nope"}), body, 422, "type"),
        (by_hand(**{"ce-expectedversion": "three"}), body, 422, "expectedversion"),
    ]
    for headers, content, status, says in cases:
        r = await post(client, headers, content)
        assert r.status_code == status, (headers, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert says in r.text, r.text
    # A whole CloudEvent sent as application/json, as a feed's HTTP library does by
    # default: said for what it is, not "send application/json ..., not application/json".
    event = {k.removeprefix("ce-"): v for k, v in by_hand().items() if k.startswith("ce-")}
    whole = msgspec.json.encode({**event, "data": {"title": "Summit"}})
    r = await post(client, {"content-type": "application/json"}, whole)
    assert r.status_code == 415, r.text
    detail = r.json()["detail"]
    assert "this request has no ce-specversion header" in detail, detail
    assert "application/cloudevents+json" in detail
    assert await written(client.log) == []


async def test_a_hand_made_binary_update_is_the_structured_one(client: Client) -> None:
    """`+` stays `+` and `%2B` is `+`: percent-decoding as the HTTP binding says."""
    r = await post(client, by_hand(), msgspec.json.encode({"title": "Summit"}))
    assert r.status_code == 202, r.text
    [record] = await stored(client.log)
    assert record["time"] == "2019-02-28T13:25:00+07:00"
    assert record["data"] == {"title": "Summit"}
