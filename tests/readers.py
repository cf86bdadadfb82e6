"""Reader tokens for tests that read the query API: the header of a new reader."""

from __future__ import annotations

import asyncio

from dateline.store.connection import open_client
from dateline.store.readers import Readers, Role


async def bearer(
    redis_url: str, prefix: str, role: Role = "ops", prefixes: list[str] | None = None
) -> dict[str, str]:
    """`Authorization` for a reader made for the test (role `ops`: it sees everything)."""
    client = await open_client(redis_url)  # a cluster's too
    try:
        readers = Readers(client, prefix)
        name = f"{role}-{len(await readers.readers())}"
        token = await readers.add(name, role, prefixes)
    finally:
        await client.aclose()
    return {"authorization": f"Bearer {token}"}


def add_reader(env: dict[str, str], prefix: str, role: Role = "ops") -> dict[str, str]:
    """For a module's processes (sync fixtures): a reader's token into `env`, which
    `reading(env)` turns into the header."""
    auth = asyncio.run(bearer(env["REDIS_URL"], prefix, role))
    env["TEST_READER_TOKEN"] = auth["authorization"].removeprefix("Bearer ")
    return auth


def reading(env: dict[str, str]) -> dict[str, str]:
    return {"authorization": f"Bearer {env['TEST_READER_TOKEN']}"}
