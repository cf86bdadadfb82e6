"""A story stream that asks for patches (`?patches=true`): its first state whole, then
merge patches that, applied as a client does, give the story as the API reads it; two
streams of the same story share each patch. On a real server, projector and doorbell."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

from dateline.query.patches import apply_patch
from dateline.store.log import Log
from tests.integration.test_projector import settle
from tests.integration.test_read_cache import STORY, said, served
from tests.unit.test_patches import without_nulls

__all__ = ["served"]  # the fixture, used by name


async def events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, Any]]:
    kind = ""
    async for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind, msgspec.json.decode(line[6:])


async def next_of(stream: AsyncIterator[tuple[str, Any]], *kinds: str) -> tuple[str, Any]:
    async with asyncio.timeout(5):
        async for kind, data in stream:
            if kind in kinds:
                return kind, data
    raise AssertionError("the stream ended")


async def test_patches_give_the_story_as_the_api_reads_it_and_are_shared(
    log: Log, served: dict[str, Any]
) -> None:
    http: httpx.AsyncClient = served["http"]
    path = f"/v1/stories/{STORY}/live?patches=true"
    patches = served["query"].state.patches
    async with http.stream("GET", path) as one, http.stream("GET", path) as two:
        a, b = events(one.aiter_lines()), events(two.aiter_lines())  # kept: see the note
        kind, first = await next_of(a, "state", "patch")
        assert kind == "state" and first["version"] == 1
        kind, _ = await next_of(b, "state", "patch")
        assert kind == "state"
        current = first
        for n in (2, 3):
            await log.append([said(n)])
            await settle(served["projector"])
            kind, patch = await next_of(a, "state", "patch")
            assert kind == "patch", patch
            assert set(patch) <= {"version", "position", "recordedtime", "last_time", "statements"}
            assert list(patch["statements"]) == [f"s{n}"]
            current = apply_patch(current, patch)
            kind, same = await next_of(b, "state", "patch")
            assert (kind, same) == ("patch", patch)
        read = (await http.get(f"/v1/stories/{STORY}")).json()
        assert without_nulls(current) == without_nulls(read)
        assert patches.made == 2 and patches.shared == 2


async def test_without_the_parameter_every_state_is_whole(log: Log, served: dict[str, Any]) -> None:
    http: httpx.AsyncClient = served["http"]
    async with http.stream("GET", f"/v1/stories/{STORY}/live") as r:
        stream = events(r.aiter_lines())
        assert (await next_of(stream, "state", "patch"))[0] == "state"
        await log.append([said(2)])
        await settle(served["projector"])
        kind, state = await next_of(stream, "state", "patch")
        assert kind == "state" and state["version"] == 2
