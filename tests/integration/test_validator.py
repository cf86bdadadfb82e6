"""The Redis inbox: valid updates reach the log, refused ones reach `rejected`, none lost."""

from __future__ import annotations

import dataclasses
import uuid

from redis.typing import EncodableT, FieldT

from dateline.ingest.credentials import Credentials
from dateline.ingest.validator import create_validator
from dateline.runtime import Runner
from dateline.store.cluster import LocalCluster
from dateline.store.layout import inbox_key, rejected_key
from dateline.store.log import Log
from tests.factories import encode, update
from tests.invalid_cases import CASES
from tests.raw import entries_of


async def settle(runner: Runner) -> None:
    quiet = 0
    while quiet < 2:
        quiet = quiet + 1 if not await runner.step() else 0


async def test_inbox_entries_land_in_the_log_or_in_rejected(log: Log) -> None:
    await _inbox_entries_land(log)


async def test_on_a_cluster_too(local_cluster: LocalCluster) -> None:
    """Each inbox read on its own (a slot each), refusals written before the inbox lets
    go of them (no transaction spans their slots); a revoked feed's token refused."""
    log = await Log.connect(local_cluster.url, prefix=f"t{uuid.uuid4().hex[:10]}")
    try:
        await _inbox_entries_land(log)
        creds = Credentials(log.redis, log.keys.prefix)
        token = await creds.add("wire-b", "urn:feed:b")
        assert await creds.authenticate(token) is not None
        assert await creds.revoke("wire-b")
        assert await creds.authenticate(token) is None
    finally:
        await log.close()


async def _inbox_entries_land(log: Log) -> None:
    creds = Credentials(log.redis, log.keys.prefix)
    await creds.add("wire-a", "urn:feed:test")
    inbox = inbox_key(log.keys.prefix, "wire-a")
    good = encode(update(id="good"))
    sent: list[dict[FieldT, EncodableT]] = [
        {"__data__": good},
        {"__data__": good},  # a retry: a duplicate, appended once
        {"__data__": encode(update(id="good", time="2019-02-27T09:00:00+07:00"))},  # id reused
        {"__data__": encode(update(id="bad", subject="Not An Id"))},
        {"__data__": encode(update(id="theirs", source="urn:feed:someone-else"))},
        {"data": good},  # the wrong field name
        {"__data__": b"{truncated"},
    ]
    for fields in sent:
        await log.redis.xadd(inbox, fields)
    runner = await create_validator(log.redis, log.keys, "v1")
    runner.config = dataclasses.replace(runner.config, block_ms=20)
    await settle(runner)
    assert [u.id for u in await log.read_story("hanoi-summit-2019")] == ["good"]
    rejected = entries_of(await log.redis.xrange(rejected_key(log.keys.prefix)))
    reasons = [(f[b"field"].decode(), f[b"reason"].decode()) for _, f in rejected]
    assert [field for field, _ in reasons] == ["subject", "source", "entry", "update", "id"]
    assert "differs in time" in reasons[4][1]  # its feed learns the log kept the first
    assert "story id" in reasons[0][1]
    assert "urn:feed:someone-else" in reasons[1][1]
    assert "__data__" in reasons[2][1]
    assert all(f[b"feed"] == b"wire-a" for _, f in rejected)
    pending = await log.redis.xpending(inbox, "validator")
    assert pending["pending"] == 0  # every entry is in the log or in rejected


async def test_a_revoked_feeds_inbox_is_refused(log: Log) -> None:
    creds = Credentials(log.redis, log.keys.prefix)
    await creds.add("gone", "urn:feed:test")
    await log.redis.xadd(inbox_key(log.keys.prefix, "gone"), {"__data__": encode(update())})
    runner = await create_validator(log.redis, log.keys, "v1", feeds=["gone"])
    runner.config = dataclasses.replace(runner.config, block_ms=20)
    await creds.revoke("gone")
    await settle(runner)
    assert await log.version("hanoi-summit-2019") == 0
    [(_, fields)] = entries_of(await log.redis.xrange(rejected_key(log.keys.prefix)))
    assert b"revoked" in fields[b"reason"]


async def test_every_hostile_input_of_the_shared_table_is_rejected_from_the_inbox(
    log: Log,
) -> None:
    """The table HTTP ingest and the decoder are tested against, through a feed's inbox:
    each entry lands in `rejected` naming its field and rule; the log gets none of them."""
    creds = Credentials(log.redis, log.keys.prefix)
    await creds.add("wire-a", "urn:feed:test")
    inbox = inbox_key(log.keys.prefix, "wire-a")
    for case in CASES:
        await log.redis.xadd(inbox, {"__data__": case.raw})
    runner = await create_validator(log.redis, log.keys, "v1")
    runner.config = dataclasses.replace(runner.config, block_ms=20)
    await settle(runner)
    rejected = entries_of(await log.redis.xrange(rejected_key(log.keys.prefix), count=10_000))
    assert len(rejected) == len(CASES)
    for case, (_, fields) in zip(CASES, rejected, strict=True):
        assert fields[b"field"].decode() == case.field, case.name
        assert case.says in fields[b"reason"].decode(), (case.name, fields[b"reason"])
    assert await written_stories(log) == []


async def written_stories(log: Log) -> list[bytes]:
    return [
        k async for k in log.redis.scan_iter(match=log.keys.story("*", 0).replace(":{p0}", ":*"))
    ]


async def test_rule_5_through_the_inbox(log: Log) -> None:
    """A feed's inbox is held to rule 5 as HTTP is: another source's update needs the
    editor right; an editor feed's updates are recorded as such."""
    creds = Credentials(log.redis, log.keys.prefix)
    await creds.add("wire-a", "urn:feed:test")
    await creds.add("desk", "urn:feed:desk", editor=True)
    data = {
        "corrects": "theirs-1",
        "target_source": "urn:feed:other",
        "changes": {"title": "Forged"},
        "note": "n",
    }
    forged = update("dateline.correction.issued", id="c-1", data=data)
    by_desk = update("dateline.correction.issued", id="c-2", source="urn:feed:desk", data=data)
    await log.redis.xadd(inbox_key(log.keys.prefix, "wire-a"), {"__data__": encode(forged)})
    await log.redis.xadd(inbox_key(log.keys.prefix, "desk"), {"__data__": encode(by_desk)})
    runner = await create_validator(log.redis, log.keys, "v1")
    runner.config = dataclasses.replace(runner.config, block_ms=20)
    await settle(runner)
    [(_, refused)] = entries_of(await log.redis.xrange(rejected_key(log.keys.prefix)))
    assert refused[b"field"] == b"data.target_source" and b"rule 5" in refused[b"reason"]
    [record] = await log.read_story_json("hanoi-summit-2019")
    assert b'"editor":true' in record and b'"id":"c-2"' in record
