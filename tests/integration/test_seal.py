"""Sealed logs (`store/seal.py`) on a real server: the append function seals what it
writes, the plain script refuses a sealed partition, and a reader refuses what was written
around the function (a raw XADD or RPUSH), keeps a log from before sealing readable, and
seals that log's lists in place."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from dateline.store import seal
from dateline.store.log import APPEND_SCRIPT, AppendFunctionMissing, Log, _wire
from dateline.store.seal import Sealing, Unsealed
from tests.factories import encode, update
from tests.raw import items

KEY = secrets.token_bytes(32)


async def _has_functions(client: aioredis.Redis) -> bool:
    info = await client.info("server")
    return int(str(info["redis_version"]).split(".")[0]) >= 7


@pytest.fixture
async def sealed(log: Log) -> Log:
    if not await _has_functions(log.redis):
        pytest.skip("Redis 6.2 has no functions: its logs are not sealed")
    return log


def _reader(log: Log, key: bytes | None = KEY) -> Log:
    return Log(log.redis, log.keys, sealing=Sealing(key, log.keys))


async def test_a_sealed_log_is_appended_by_the_function_and_read_opened(sealed: Log) -> None:
    log = sealed
    report = await seal.seal_log(log.redis, log.keys, KEY)
    assert report.partitions == log.keys.partitions and report.records == 0
    sent = [encode(update(subject="hanoi-summit", id=f"u{i}")) for i in range(3)]
    results = await log.append(sent)  # the script, refused with SEALED, then the function
    assert [r.status for r in results] == ["appended"] * 3

    part = log.keys.partition("hanoi-summit")
    stored = items(await log.redis.lrange(log.keys.story("hanoi-summit"), 0, -1))
    assert all(r.endswith(b'"}') and b',"seal":"' in r for r in stored)
    reader = _reader(log)
    history = await reader.read_story_json("hanoi-summit")
    assert [seal.opened(KEY, r) for r in stored] == history
    assert b'"seal"' not in b"".join(history)
    entries = await reader.read_partition(part)
    assert [u.id for _, u in entries] == ["u0", "u1", "u2"]
    # Python's HMAC is the function's: a record sealed here reads the same as stored.
    assert [seal.seal(KEY, r) for r in history] == stored
    # A retry is a duplicate, not a second record; the seal is not the feed's content,
    # so the same update sent again differs in nothing, and other content says so.
    reused = update(subject="hanoi-summit", id="u1")
    reused["data"]["title"] = "other"
    again, other = await log.append([sent[0], encode(reused)])
    assert (again.status, again.differs) == ("duplicate", None)
    assert (other.status, other.differs) == ("duplicate", ["data.title"])
    assert await log.version("hanoi-summit") == 3


async def test_the_plain_script_refuses_a_sealed_partition_and_writes_nothing(
    sealed: Log,
) -> None:
    log = sealed
    report = await seal.seal_log(log.redis, log.keys, KEY)
    prepared = log.prepare([encode(update(subject="hanoi-summit"))], atomic=False)
    with pytest.raises(ResponseError, match=f"SEALED {report.function}"):
        await log.redis.eval(APPEND_SCRIPT, len(prepared.keys), *prepared.keys, *prepared.args)
    assert await log.version("hanoi-summit") == 0


async def test_entries_written_around_the_function_are_refused(sealed: Log) -> None:
    log = sealed
    await seal.seal_log(log.redis, log.keys, KEY)
    await log.append([encode(update(subject="hanoi-summit", id="real"))])
    part = log.keys.partition("hanoi-summit")
    forged = encode(update(subject="hanoi-summit", id="forged"))[:-1] + (
        b',"version":2,"position":"0:1-0","recordedtime":"2019-02-28T00:00:00.000Z"}'
    )
    await log.redis.xadd(log.keys.log(part), {"__data__": forged})
    await log.redis.rpush(log.keys.story("hanoi-summit"), forged)
    reader = _reader(log)
    with pytest.raises(Unsealed, match="no seal"):
        await reader.read_partition(part)
    with pytest.raises(Unsealed, match="no seal"):
        await reader.read_story_json("hanoi-summit")
    # A seal copied from another record does not fit this one.
    stored = items(await log.redis.lrange(log.keys.story("hanoi-summit"), 0, 0))[0]
    copied = forged[:-1] + stored[stored.rindex(b',"seal":"') :]
    await log.redis.lset(log.keys.story("hanoi-summit"), 1, copied)  # type: ignore[arg-type]
    with pytest.raises(Unsealed, match="does not match"):
        await reader.read_story_json("hanoi-summit")
    # A reader without the key is told to get it, not handed records it cannot check.
    with pytest.raises(seal.SealKeyMissing, match="DATELINE_SEAL_KEY"):
        await _reader(log, None).read_story_json("hanoi-summit")


async def test_a_log_from_before_sealing_is_sealed_in_place_and_stays_readable(
    sealed: Log,
) -> None:
    log = sealed
    await log.append([encode(update(subject=f"story-{i % 5}", id=f"old{i}")) for i in range(40)])
    before = {s: await log.read_story_json(f"story-{s}") for s in range(5)}
    # A record pushed to a list before sealing, with no stream entry: it stays unsealed.
    part = log.keys.partition("story-0")
    await log.redis.rpush(log.keys.story("story-0", part), b'{"forged":true}')
    seen: list[int] = []
    report = await seal.seal_log(log.redis, log.keys, KEY, progress=seen.append, page=7)
    assert report.records == 40 and sum(seen) == 40 and report.mismatched == []
    await log.append([encode(update(subject="story-1", id="new"))])

    reader = _reader(log)
    for s in range(1, 5):
        history = await reader.read_story_json(f"story-{s}")
        assert history[: len(before[s])] == before[s]
    with pytest.raises(Unsealed):
        await reader.read_story_json("story-0")
    # The stream's entries from before sealing stay as they were, and read.
    for p in range(log.keys.partitions):
        for _, u in await reader.read_partition(p):
            assert u.id.startswith("old") or u.id == "new"
    # Run again: nothing left to mark or seal.
    again = await seal.seal_log(log.redis, log.keys, KEY)
    assert (again.partitions, again.records) == (0, 0)


async def test_an_append_to_a_sealed_log_without_its_function_says_who_loads_it(
    sealed: Log,
) -> None:
    log = sealed
    for p in range(log.keys.partitions):
        await log.redis.hset(log.keys.seal(p), mapping={"from": "0-0", "function": "gone_fn"})
    with pytest.raises(AppendFunctionMissing, match="start the projector"):
        await log.append([encode(update(subject="hanoi-summit"))])
    assert await log.version("hanoi-summit") == 0


async def test_a_bulk_append_to_a_sealed_log_goes_by_the_function(sealed: Log) -> None:
    log = sealed
    await seal.seal_log(log.redis, log.keys, KEY)
    batches = [
        [encode(update(subject="bulk", id=f"b{i}-{j}")) for j in range(10)] for i in range(3)
    ]
    statuses = [r.status async for rs in log.append_stream(batches) for r in rs]
    assert statuses == ["appended"] * 30
    history = await _reader(log).read_story_json("bulk")
    assert len(history) == 30


async def test_appends_side_by_side_all_learn_the_function_from_the_refusal(
    sealed: Log,
) -> None:
    log = sealed
    await seal.seal_log(log.redis, log.keys, KEY)
    fresh = Log(log.redis, log.keys)  # as ingest starts: it has not met the seal yet
    sent = [[encode(update(subject=f"story-{i}", id=f"c{i}"))] for i in range(8)]
    done = await asyncio.gather(*(fresh.append(batch) for batch in sent))
    assert [rs[0].status for rs in done] == ["appended"] * 8


async def test_a_bulk_append_without_its_function_says_who_loads_it(sealed: Log) -> None:
    log = sealed
    for p in range(log.keys.partitions):
        await log.redis.hset(log.keys.seal(p), mapping={"from": "0-0", "function": "gone_fn"})
    with pytest.raises(AppendFunctionMissing, match="start the projector"):
        async for _ in log.append_stream([[encode(update(subject="bulk"))]]):
            pass
    assert await log.version("bulk") == 0


async def test_an_older_release_s_function_is_sent_a_table_an_update(sealed: Log) -> None:
    """Until a projector of this release names its own function, a sealed log's markers
    may name an older release's, which reads a table an update: this release sends it
    that. (The older function here is this release's code under an older name, made to
    refuse the flat columns as an older release's would fail on them, and to answer a
    table an update, as releases before 2026-12-06 do: this release reads both.)"""
    log = sealed
    report = await seal.seal_log(log.redis, log.keys, KEY)
    library = seal.append_library(KEY)
    older = report.function.replace(seal.FLAT_FUNCTION, "dateline_append_")
    opening = "  callback = function(KEYS, ARGV)\n"
    refuse = "if type(cmsgpack.unpack(ARGV[2])[1]) ~= 'table' then return redis.error_reply('FLAT') end\n"
    tables = "local as_text = false"  # an older release's answers a table an update
    code = (
        library.code.replace(report.function, older)
        .replace(library.name, library.name + "_older")
        .replace(opening, opening + refuse)
        .replace("local as_text = ARGV[4] == '1'", tables)
    )
    assert refuse in code and tables in code
    await log.redis.function_load(code)
    for p in range(log.keys.partitions):
        await log.redis.hset(log.keys.seal(p), "function", older)
    fresh = Log(log.redis, log.keys)
    sent = [encode(update(subject="older", id=f"o{i}")) for i in range(3)]
    assert [r.status for r in await fresh.append(sent)] == ["appended"] * 3
    assert [r.status for r in await fresh.append(sent[:1])] == ["duplicate"]
    streamed = [r.status async for rs in fresh.append_stream([sent, sent]) for r in rs]
    assert streamed == ["duplicate"] * 6
    assert len(await _reader(log).read_story_json("older")) == 3


async def test_the_script_takes_a_table_an_update_from_an_older_client(log: Log) -> None:
    sent = [encode(update(subject=f"mixed-{i % 2}", id=f"m{i}")) for i in range(4)]
    prepared = log.prepare(sent, atomic=False)
    # An older client sends three arguments (not the reply's shape, ARGV[4]) and reads
    # a table a reply.
    nested = _wire("dateline_append_0123456789ab", prepared.args)[:3]
    replies = await log.redis.eval(APPEND_SCRIPT, len(prepared.keys), *prepared.keys, *nested)
    assert [r[0] for r in replies] == [b"appended"] * 4
    assert [await log.version(f"mixed-{i}") for i in range(2)] == [2, 2]
    again = await log.append(sent)  # this release, flat: the same dedup
    assert [r.status for r in again] == ["duplicate"] * 4
