"""The query's read scripts as a function library (`store/functions.py`), on both servers:
functions on Valkey, the same scripts by `EVALSHA` on Redis 6.2, the same replies."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError

from dateline.store import functions, scripts
from dateline.store.functions import ReadFunctions
from dateline.store.layout import GroupKeys
from dateline.store.log import Log
from dateline.store.readmodels import ReadModels
from tests.factories import encode, update


async def _has_functions(client: aioredis.Redis) -> bool:
    info = await client.info("server")
    return int(str(info["redis_version"]).split(".")[0]) >= 7


async def test_the_library_holds_each_script_as_a_read_only_function() -> None:
    library = scripts.library(*functions.READS)
    assert library.code.startswith(f"#!lua name={library.name}\n")
    for name in functions.READS:
        assert library.functions[name].endswith(library.name.removeprefix("dateline"))
        assert f"function_name = '{library.functions[name]}'" in library.code
    assert library.code.count("flags = {'no-writes'}") == len(functions.READS)
    # A new release's library has a name of its own: the old stays for those who call it.
    assert scripts.library("story").name != library.name


async def _appended(log: Log, story: str) -> tuple[list[str], str]:
    """An update of `story` appended: the keys and the stream id a `parked_at` read of
    it takes."""
    parked = GroupKeys(log.keys.prefix, ReadModels(log.keys, "vt").group).parked
    [position] = [r.position for r in await log.append([encode(update(subject=story))])]
    partition, at = str(position).split(":")
    return [log.keys.log(int(partition)), parked], at


async def test_reads_answer_the_same_by_function_and_by_script(log: Log) -> None:
    keys, at = await _appended(log, "story-f")
    reads = ReadFunctions(log.redis)
    assert await reads("parked_at", keys, [at]) == [b"story-f", None]
    script = log.redis.register_script(scripts.load("parked_at"))
    assert await script(keys=keys, args=[at]) == [b"story-f", None]
    if await _has_functions(log.redis):
        listed = await log.redis.function_list(library=reads.library.name)
        assert listed, "the first call loads the library"
        assert reads._functions is True
    else:
        assert reads._functions is False


async def test_a_read_whose_connection_failed_goes_again_through_the_client(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On one server a read goes out as the projector's do (`in_turn`); a read is safe to
    send twice, so one whose connection failed is sent again through the client's own
    path, which retries a lost connection, and the caller gets its answer."""
    if not await _has_functions(log.redis):
        pytest.skip("Redis 6.2 has no functions: its reads go by EVALSHA")
    keys, at = await _appended(log, "story-g")
    reads = ReadFunctions(log.redis)
    assert await reads("parked_at", keys, [at]) == [b"story-g", None]
    sent: list[object] = []

    async def lost(*commands: object) -> list[object]:
        sent.extend(commands)
        raise RedisConnectionError("Connection closed by server.")

    monkeypatch.setattr(functions, "in_turn", lost)
    assert await reads("parked_at", keys, [at]) == [b"story-g", None]
    [failed] = sent[1:]
    assert isinstance(failed, tuple) and failed[0] == "FCALL_RO"


async def test_a_user_with_only_fcall_ro_reads_and_cannot_run_a_script(
    log: Log, redis_url: str
) -> None:
    if not await _has_functions(log.redis):
        pytest.skip("Redis 6.2 has no functions: its query user keeps EVAL")
    assert await functions.load(log.redis)  # as the projector does when it starts
    async with _user(log, redis_url, "+fcall_ro", "+ping", "+xrange", "+hget") as reader:
        models = ReadModels(log.keys, "vt")
        parked = GroupKeys(log.keys.prefix, models.group).parked
        [done] = await log.append([encode(update(subject="story-g"))])
        partition, at = str(done.position).split(":")
        reads = ReadFunctions(reader)
        keys = [log.keys.log(int(partition)), parked]
        assert await reads("parked_at", keys, [at]) == [b"story-g", None]
        # What it calls, it may call itself (a script runs with its caller's rights) ...
        assert await reader.xrange(keys[0]) != []
        # ... but no code of its own: a loop in Lua would hold the server.
        with pytest.raises(NoPermissionError):
            await reader.eval("while true do end", 0)
        with pytest.raises(NoPermissionError):
            await reader.function_load("#!lua name=mine\nredis.register_function('x', f)")


async def test_without_the_library_and_without_rights_the_error_says_who_loads_it(
    log: Log, redis_url: str
) -> None:
    if not await _has_functions(log.redis):
        pytest.skip("Redis 6.2 has no functions")
    await log.redis.function_delete(scripts.library(*functions.READS).name)
    async with _user(log, redis_url, "+fcall_ro", "+xrange", "+hget") as reader:
        reads = ReadFunctions(reader)
        keys = [log.keys.log(0), f"{log.keys.prefix}:parked"]
        with pytest.raises(NoPermissionError, match="start the projector, which loads it"):
            await reads("parked_at", keys, ["1-1"])
        assert await functions.load(log.redis)
        assert await reads("parked_at", keys, ["1-1"]) is None  # and now it reads


@contextlib.asynccontextmanager
async def _user(log: Log, redis_url: str, *commands: str) -> AsyncIterator[aioredis.Redis]:
    """A client of a user of its own: the log's keys, `commands` and nothing else."""
    user, password = f"q{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await log.redis.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=[f"{log.keys.prefix}:*"],
        commands=["-@all", *commands],
    )
    client = aioredis.Redis.from_url(redis_url, username=user, password=password)
    try:
        yield client
    finally:
        await client.aclose()
        await log.redis.acl_deluser(user)
