"""Moving a log (`dateline migrate`, `store/migrate.py`): to another server with more
partitions, and to a real cluster; what a feed sees meanwhile; the check that catches a
copy that differs."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from bench.projection import newsroom_updates
from litestar.testing import AsyncTestClient

from dateline.domain.positions import Position, stream_id
from dateline.ingest.app import create_app
from dateline.ingest.credentials import Credentials
from dateline.ingest.wire import CE_BATCH
from dateline.store import migrate, refused
from dateline.store.cluster import LocalCluster
from dateline.store.config import Settings
from dateline.store.connection import connect, open_client, sent_by_slot
from dateline.store.layout import DELIVER_GROUP, Keys, inbox_key, rejected_key
from dateline.store.log import Log, LogMoving
from dateline.store.seal import Sealing, is_sealed, seal_log, sealing_key
from dateline.store.subscriptions import Subscriptions
from tests.e2e.processes import DATELINE
from tests.factories import encode, update
from tests.integration.conftest import hanoi_in
from tests.monitor import commands_sent
from tests.projection_helpers import HANOI
from tests.raw import data, entries_of


class _Record(msgspec.Struct):
    id: str
    version: int
    position: str
    recordedtime: str


_record = msgspec.json.Decoder(_Record).decode


async def _sealed(log: Log) -> bytes:
    """Seal the log with a new key (skipped on Redis 6.2, which has no functions)."""
    if int(str((await log.redis.info("server"))["redis_version"]).split(".")[0]) < 7:
        pytest.skip("Redis 6.2 has no functions: its logs are not sealed")
    key = secrets.token_bytes(32)
    await seal_log(log.redis, log.keys, key)
    return key


async def _moved(
    source: Log, target: aioredis.Redis, to: Keys, seal_key: bytes | None = None
) -> list[str]:
    await migrate.check_empty(target, to)
    await Log(target, to).check_partitions()
    await migrate.freeze(source.redis, source.keys, "is being moved (a test)", "there")
    checks = await migrate.copy_log(source.redis, source.sealing, target, to, seal_key=seal_key)
    return await migrate.check(target, to, checks, seal_key=seal_key)


async def _same_histories(
    source: Log, target: aioredis.Redis, to: Keys, stories: list[str], key: bytes | None = None
) -> None:
    moved = Log(target, to, sealing=Sealing(key, to))
    for story in stories:
        before = [_record(r) for r in await source.read_story_json(story)]
        after_raw = await moved.read_story_json(story)
        after = [_record(r) for r in after_raw]
        assert [(r.id, r.version, r.recordedtime) for r in after] == [
            (r.id, r.version, r.recordedtime) for r in before
        ]
        part = to.partition(story)
        for raw, rec in zip(after_raw, after, strict=True):
            # The position is where it landed: the story's new partition, a stream entry
            # that holds the same record, under the millisecond it was recorded.
            where, eid = rec.position.split(":")
            assert int(where) == part
            [(_, fields)] = entries_of(await target.xrange(to.log(part), min=eid, max=eid))
            assert fields[b"__data__"] == raw
            recorded = datetime.fromisoformat(rec.recordedtime.replace("Z", "+00:00"))
            assert int(eid.split("-")[0]) == round(recorded.timestamp() * 1000)


async def test_hanoi_moves_to_a_server_with_twice_the_partitions(
    source: Log, redis_url: str
) -> None:
    stories = await hanoi_in(source)
    token = await Credentials(source.redis, source.keys.prefix).add("wire-a", "urn:feed:test")
    # The same prefix, on another database of the same server: the feeds' keys too.
    target = aioredis.Redis.from_url(redis_url.removesuffix("/0") + "/2")
    to = Keys(source.keys.prefix, 16)
    assert await _moved(source, target, to) == []
    await _same_histories(source, target, to, stories)
    # The feeds come along: the token works against the target.
    assert await migrate.copy_settings(source.redis, target, to.prefix) == 2
    assert await Credentials(target, to.prefix).authenticate(token) is not None
    # A feed's retry of an update from before the move is still a duplicate, at the
    # version and position it has now.
    first = next(x for x in HANOI.read_bytes().splitlines() if x.strip())
    [again] = await Log(target, to).append([first])
    assert again.status == "duplicate"
    assert again.version == 1
    assert again.subject is not None and again.position is not None
    assert again.position.startswith(f"{to.partition(again.subject)}:")
    # New updates continue each story's versions.
    [new] = await Log(target, to).append([encode(update(subject=stories[0], id="after"))])
    assert new.version == await source.version(stories[0]) + 1
    async for key in target.scan_iter(match=f"{to.prefix}:*"):
        await target.delete(key)
    await target.aclose()


async def test_a_page_goes_to_one_server_as_one_transaction(source: Log, redis_url: str) -> None:
    """Under `appendfsync always` the target fsyncs once a page, not once for each 16 KB
    of it it reads: the page's writes are queued and run by one EXEC. Its stream entries
    in order, then a story's records in one `RPUSH`, a partition's dedup entries in one
    `HSET`."""
    stories = await hanoi_in(source)
    target = connect(redis_url.removesuffix("/0") + "/3", max_connections=1)
    to = Keys(source.keys.prefix, 8)
    try:
        await Log(target, to).check_partitions()
        seen = await commands_sent(
            redis_url,
            target,
            lambda: migrate.copy_log(source.redis, source.sealing, target, to),
            "EXEC",
        )
        updates = sum([await source.redis.xlen(log) for log in source.keys.logs()])
        partitions = {to.partition(s) for s in stories}
        rpushes, hsets = ["RPUSH"] * len(stories), ["HSET"] * len(partitions)
        assert seen == ["MULTI", *["XADD"] * updates, *rpushes, *hsets, "EXEC"]
    finally:
        async for key in target.scan_iter(match=f"{to.prefix}:*"):
            await target.delete(key)
        await target.aclose()


async def test_a_frozen_log_refuses_appends_and_says_why_until_released(
    source: Log, redis_url: str
) -> None:
    await hanoi_in(source)
    held = await source.version("hanoi-summit-2019")
    await migrate.freeze(source.redis, source.keys, "is being moved to x (a test)", "x")
    with pytest.raises(LogMoving, match="is being moved to x"):
        await source.append([encode(update(id="during"))])
    streamed = source.append_stream([[encode(update(id="during-2"))]])
    with pytest.raises(LogMoving):
        await anext(streamed)
    # Over HTTP: a 503 that says so, with a Retry-After; nothing written.
    settings = Settings(
        redis_url,
        data_dir=None,  # type: ignore[arg-type]
        prefix=source.keys.prefix,
        partitions=source.keys.partitions,
    )
    token = await Credentials(source.redis, source.keys.prefix).add("wire-a", "urn:feed:test")
    headers = {"content-type": CE_BATCH, "authorization": f"Bearer {token}"}
    body = json.dumps([update(id="http-during")]).encode()
    async with AsyncTestClient(app=create_app(settings, redis_url)) as http:
        r = await http.post("/v1/updates", content=body, headers=headers)
        assert r.status_code == 503, r.text
        assert "is being moved to x" in r.json()["detail"]
        assert int(r.headers["retry-after"]) > 0
        assert await source.version("hanoi-summit-2019") == held  # nothing written
        assert await migrate.release(source.redis, source.keys) == source.keys.partitions
        r = await http.post("/v1/updates", content=body, headers=headers)
        assert r.status_code == 202, r.text


async def test_the_check_finds_a_copy_that_differs(source: Log, redis_url: str) -> None:
    stories = await hanoi_in(source)
    target = aioredis.Redis.from_url(redis_url)
    to = Keys(f"m{uuid.uuid4().hex[:10]}", 8)
    checks = await migrate.copy_log(source.redis, source.sealing, target, to)
    assert await migrate.check(target, to, checks) == []
    story = stories[-1]
    second = data(await target.lindex(to.story(story), 1))
    await target.lset(to.story(story), 0, second)  # type: ignore[arg-type]  # bytes, as stored
    await target.rpush(to.story(stories[0]), b'{"id":"x","version":9,"position":"0:1-0"}')
    wrong = await migrate.check(target, to, checks)
    assert f"{story}: its records differ" in wrong
    assert any(w.startswith(f"{stories[0]}: ") and "updates on the target" in w for w in wrong)
    await target.aclose()


@pytest.mark.parametrize("where", ["server", "cluster"])
async def test_the_check_reads_stories_by_the_page_and_names_each_that_differs(
    source: Log, where: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 stories of about 10 updates: 3,000 records read in 3 or 4 pages, not 300
    reads (on a cluster, a partition's part of each page on its node); a story cut short
    in the first page and one changed in the last are named, in the order of the
    stories."""
    pages: list[int] = []
    read = sent_by_slot

    async def counted(client: aioredis.Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
        pages.append(len(commands))
        return await read(client, commands)

    monkeypatch.setattr(migrate, "sent_by_slot", counted)
    generated = newsroom_updates(3_000, 300)
    for i in range(0, len(generated), 1000):
        results = await source.append(generated[i : i + 1000])
        assert {r.status for r in results} == {"appended"}
    on_cluster = where == "cluster"
    url = request.getfixturevalue("cluster_url" if on_cluster else "redis_url")
    target = await open_client(url)
    to = Keys(f"m{uuid.uuid4().hex[:10]}", 16 if on_cluster else 8, slotted=on_cluster)
    try:
        checks = await migrate.copy_log(source.redis, source.sealing, target, to)
        assert len(checks) == 300
        assert await migrate.check(target, to, checks) == []
        assert 3 <= len(pages) <= 4 and sum(pages) == 300, pages
        stories = list(checks)
        first, last = stories[0], stories[-1]
        await target.rpop(to.story(first))
        second = data(await target.lindex(to.story(last), 1))
        await target.lset(to.story(last), 0, second)  # type: ignore[arg-type]  # bytes, as stored
        want = checks[first].count
        assert await migrate.check(target, to, checks) == [
            f"{first}: {want - 1} updates on the target, {want} here",
            f"{last}: its records differ",
        ]
    finally:
        async for key in target.scan_iter(match=f"{to.prefix}:*"):
            await target.delete(key)
        await target.aclose()


async def test_a_target_that_holds_the_log_already_is_refused(source: Log, redis_url: str) -> None:
    await hanoi_in(source)
    target = aioredis.Redis.from_url(redis_url)
    with pytest.raises(migrate.TargetNotEmpty, match="already holds a log"):
        await migrate.check_empty(target, source.keys)
    await target.aclose()


async def test_a_sealed_log_moves_to_a_cluster_and_is_sealed_there(
    source: Log, local_cluster: LocalCluster
) -> None:
    key = await _sealed(source)
    sealed = Log(source.redis, source.keys, sealing=Sealing(key, source.keys))
    stories = await hanoi_in(sealed)
    target = await open_client(local_cluster.url)
    to = Keys(f"m{uuid.uuid4().hex[:10]}", 8)
    # As `dateline migrate` does: the function loaded on every master first, the lists
    # written sealed and checked so, then the partitions only marked.
    assert await sealing_key(target, key) == key
    assert await _moved(sealed, target, to, seal_key=key) == []
    report = await seal_log(target, to, key, listed=True)
    assert (report.partitions, report.records, report.mismatched) == (8, 0, [])
    reader = Log(target, to, sealing=Sealing(key, to))
    await reader.sealing.refresh(target)
    assert reader.sealing.complete  # every list record must carry its seal from here
    await _same_histories(sealed, target, to, stories, key)
    assert [u.version for u in await reader.read_story(stories[0])][-1] == await sealed.version(
        stories[0]
    )
    await target.aclose()


@pytest.mark.slow  # 17 s a server: `.ci/run` runs the slow group after the default suite
def test_the_command_moves_a_generated_log_to_a_cluster(
    tmp_path: Path, redis_url: str, local_cluster: LocalCluster
) -> None:
    """`dateline migrate` as an operator runs it: 100,000 updates over 10,000 stories
    from one server to a cluster with twice the partitions, checked; then the source
    refuses appends and says where the log went, and the log reads back from the
    cluster."""
    prefix = f"c{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "REDIS_URL": redis_url, "DATELINE_PREFIX": prefix}
    env.pop("DATELINE_SEAL_KEY", None)
    generated = newsroom_updates(100_000, 10_000)
    published = subprocess.run(
        [str(DATELINE), "publish", "-", "--batch-size", "1000"],
        input=b"\n".join(generated),
        env=env,
        capture_output=True,
        check=False,
    )
    assert published.returncode == 0, published.stderr[-2000:]
    moved = subprocess.run(
        [
            str(DATELINE),
            "migrate",
            "--to",
            local_cluster.url,
            "--partitions",
            "16",
            "--positions",
            str(tmp_path / "positions.tsv"),
        ],
        env=env,
        capture_output=True,
        check=False,
    )
    assert moved.returncode == 0, moved.stderr[-2000:]
    out = moved.stdout.decode()
    print(out)
    assert "moved 100000 updates of 10000 stories" in out
    assert "(8 -> 16 partitions)" in out and "count and digest match" in out
    assert "redis://:****@127.0.0.1:" in out  # the password is not printed
    mapped = [line.split("\t") for line in (tmp_path / "positions.tsv").read_text().splitlines()]
    assert len(mapped) == 100_000
    assert len({new for _, new in mapped}) == 100_000
    again = subprocess.run(
        [str(DATELINE), "publish", "-"],
        input=generated[0],
        env=env,
        capture_output=True,
        check=False,
    )
    assert again.returncode == 1
    assert b"has moved to redis://" in again.stderr
    # On-call asking the old server sees it first thing.
    status = subprocess.run(
        [str(DATELINE), "status", "--json"], env=env, capture_output=True, check=False
    )
    assert status.returncode == 0, status.stderr[-2000:]
    assert json.loads(status.stdout)["moving"].startswith("has moved to redis://:****@")
    status = subprocess.run([str(DATELINE), "status"], env=env, capture_output=True, check=False)
    assert b"the log has moved to" in status.stderr
    story = str(json.loads(generated[-1])["subject"])
    history = subprocess.run(
        [str(DATELINE), "log", "--json", story],
        env={**env, "REDIS_URL": local_cluster.url, "DATELINE_PARTITIONS": "16"},
        capture_output=True,
        check=False,
    )
    assert history.returncode == 0, history.stderr[-2000:]
    versions = [json.loads(line)["version"] for line in history.stdout.splitlines()]
    assert versions == list(range(1, len(versions) + 1))
    assert versions


async def test_a_sealed_log_is_frozen_by_its_function_and_stays_sealed_when_released(
    source: Log,
) -> None:
    key = await _sealed(source)
    sealed = Log(source.redis, source.keys, sealing=Sealing(key, source.keys))
    await sealed.append([encode(update(id="before"))])
    await migrate.freeze(source.redis, source.keys, "is being moved (a test)", "x")
    for log in (sealed, Log(source.redis, source.keys)):  # by the function, or the script
        with pytest.raises(LogMoving, match="is being moved"):
            await log.append([encode(update(id="during"))])
    assert await migrate.release(source.redis, source.keys) == source.keys.partitions
    assert await is_sealed(source.redis, source.keys)
    [after] = await sealed.append([encode(update(id="after"))])
    assert (after.status, after.version) == ("appended", 2)
    assert [u.id for u in await sealed.read_story("hanoi-summit-2019")] == ["before", "after"]


async def test_a_marker_that_holds_only_a_move_does_not_seal_the_log(source: Log) -> None:
    await migrate.freeze(source.redis, source.keys, "is being moved (a test)", "x")
    assert not await is_sealed(source.redis, source.keys)
    await migrate.release(source.redis, source.keys)
    [done] = await source.append([encode(update(id="plain"))])
    assert done.status == "appended"  # the plain script: no SEALED from an empty marker


async def test_inboxes_come_along_and_delivery_starts_after_the_copied_history(
    source: Log, redis_url: str
) -> None:
    """A feed's Redis inbox is copied entry for entry (the target's validator reads it
    from the start: what was validated here comes back as duplicates); where the source
    fans out to subscribers, the target's fan-out starts past the copied history, so no
    subscriber gets the whole log again. What the validator refused comes along."""
    await hanoi_in(source)
    prefix = source.keys.prefix
    await Credentials(source.redis, prefix).add("wire-a", "urn:feed:test")
    inbox = inbox_key(prefix, "wire-a")
    sent = [
        await source.redis.xadd(inbox, {"update": encode(update(id=f"i{n}"))}) for n in range(3)
    ]
    pipe = source.redis.pipeline(transaction=True)
    refused.add(pipe, prefix, feed="wire-a", entry="1-0", raw=b"{", field="update", reason="r")
    await pipe.execute()
    [was] = await refused.refusals(source.redis, prefix)
    subs = Subscriptions(source.redis, source.keys)
    _, secret = await subs.add("https://cms.example.org/hooks", name="cms")
    await source.redis.xgroup_create(source.keys.log(0), DELIVER_GROUP, id="0", mkstream=True)
    target = aioredis.Redis.from_url(redis_url.removesuffix("/0") + "/3")
    to = Keys(prefix, 4)
    try:
        assert await _moved(source, target, to) == []
        await migrate.copy_settings(source.redis, target, prefix)
        assert [eid for eid, _ in entries_of(await target.xrange(inbox))] == sent
        # What the validator had refused, still told on the target, at the same instant.
        assert await refused.refusals(target, prefix) == [was]
        # The subscription comes along with its secret: its subscriber's checks still pass.
        moved = Subscriptions(target, to)
        assert [sub.name for sub in await moved.all()] == ["cms"]
        assert await moved.secret("cms") == secret
        assert await migrate.place_delivery(source.redis, source.keys, target, to)
        for p in range(to.partitions):
            [group] = await target.xinfo_groups(to.log(p))
            last = (await target.xinfo_stream(to.log(p)))["last-generated-id"]
            assert group["last-delivered-id"] == last  # nothing of the copy to fan out
            assert group.get("lag", 0) == 0  # Redis 6.2 does not say
    finally:
        async for key in target.scan_iter(match=f"{prefix}:*"):
            await target.delete(key)
        await target.aclose()


async def test_the_command_puts_in_the_target_outboxes_what_the_subscriptions_were_owed(
    source: Log, redis_url: str
) -> None:
    """`cms` was fanned out Hanoi's first 10 updates and acknowledged 4; the move, to
    twice the partitions, puts its other 25 in its outbox there, in log order, each
    where the target holds it. Before, the target's fan-out started past them all."""
    subs = Subscriptions(source.redis, source.keys)
    cms, _ = await subs.add("https://cms.example.org/hooks", name="cms")
    await hanoi_in(source)
    found = [
        (stream_id(data(eid).decode()), p, fields[b"__data__"])
        for p in range(source.keys.partitions)
        for eid, fields in entries_of(await source.redis.xrange(source.keys.log(p)))
    ]
    found.sort()
    for p in range(source.keys.partitions):
        await source.redis.xgroup_create(source.keys.log(p), DELIVER_GROUP, id="0", mkstream=True)
        share = [(f"{at[0]}-{at[1]}", raw) for at, q, raw in found[:10] if q == p]
        if share:
            fields = [
                (eid, {b"story": b"x", b"position": f"{p}:{eid}".encode(), b"record": raw})
                for eid, raw in share
            ]
            for fill in fields:  # the story field as the fan-out writes it
                fill[1][b"story"] = msgspec.json.decode(fill[1][b"record"])["subject"].encode()
            await subs.to_outbox(cms, p, fields)
    window = await subs.window("cms", 100)
    await subs.delivered("cms", [(eid, 200) for eid, _ in window[:4]])
    # An outbox entry naming what the log lacks (written by hand): said, and left out.
    stray = {"story": "x", "position": "0:1-0", "record": b"{}"}
    await source.redis.xadd(subs.state("cms").outbox, stray)  # type: ignore[arg-type]
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATELINE_PREFIX": source.keys.prefix,
        "DATELINE_PARTITIONS": str(source.keys.partitions),
    }
    env.pop("DATELINE_SEAL_KEY", None)
    there = redis_url.removesuffix("/0") + "/5"
    command = [str(DATELINE), "migrate", "--to", there, "--partitions", "16"]
    moved = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True)
    target = aioredis.Redis.from_url(there)
    try:
        assert moved.returncode == 0, moved.stderr[-2000:]
        assert b"delivery: 25 updates the subscriptions' receivers had not yet" in moved.stdout
        assert b"1 updates the subscriptions were owed are not in the log (0:1-0)" in moved.stderr
        to = Keys(source.keys.prefix, 16)
        queued = [f for _, f in await Subscriptions(target, to).window("cms", 100)]
        acknowledged = {f[b"record"] for _, f in window[:4]}
        owed = [raw for _, _, raw in found if raw not in acknowledged]
        assert len(owed) == 25
        assert [f[b"record"] for f in queued] == owed
        for f in queued:
            position = Position.parse(f[b"position"].decode())
            assert position.partition == to.partition(f[b"story"].decode())
    finally:
        async for key in target.scan_iter(match=f"{source.keys.prefix}:*"):
            await target.delete(key)
        await target.aclose()


def test_the_command_says_what_is_wrong_and_release_lifts_a_freeze(redis_url: str) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "REDIS_URL": redis_url, "DATELINE_PREFIX": prefix}
    env.pop("DATELINE_SEAL_KEY", None)

    def dateline(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(DATELINE), *args], env=env, capture_output=True, check=False)

    missing = dateline("migrate")
    assert missing.returncode == 2
    assert b"--to: the server or cluster node to move the log to" in missing.stderr
    away = dateline("migrate", "--to", "redis://127.0.0.1:1/0")
    assert away.returncode == 1
    assert b"the target redis://127.0.0.1:1/0: " in away.stderr
    assert b"Traceback" not in away.stderr
    client = redis.Redis.from_url(redis_url)
    keys = Keys(prefix, 8)
    client.hset(keys.seal(3), mapping={"moving": "is being moved to x", "moving_to": "x"})
    busy = dateline("migrate", "--to", redis_url)
    assert busy.returncode == 1
    assert b"already being moved, or has moved, to x" in busy.stderr
    released = dateline("migrate", "--release")
    assert released.returncode == 0, released.stderr
    assert b"freeze lifted from 1 of 8 partitions" in released.stdout
    assert not client.exists(keys.seal(3))
    client.close()


async def test_a_target_whose_copied_streams_are_there_already_is_refused_before_the_freeze(
    source: Log, redis_url: str
) -> None:
    """A validator pointed at the target before the move refused an entry there, and a
    feed wrote to its inbox there: the copy of this log's refusals and inbox, under their
    own (earlier) ids, would stop part way, with the log copied and the freeze lifted.
    Refused before anything is written, naming the streams."""
    await hanoi_in(source)
    prefix = source.keys.prefix
    await Credentials(source.redis, prefix).add("wire-a", "urn:feed:test")
    await source.redis.xadd(inbox_key(prefix, "wire-a"), {"update": encode(update(id="i0"))})
    pipe = source.redis.pipeline(transaction=True)
    refused.add(pipe, prefix, feed="wire-a", entry="1-0", raw=b"{", field="update", reason="r")
    await pipe.execute()
    there = redis_url.removesuffix("/0") + "/4"
    target = aioredis.Redis.from_url(there)
    pipe = target.pipeline(transaction=True)
    refused.add(pipe, prefix, feed="wire-a", entry="2-0", raw=b"[", field="update", reason="r")
    await pipe.execute()
    await target.xadd(inbox_key(prefix, "wire-a"), {"update": b"{}"})
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATELINE_PREFIX": prefix,
        "DATELINE_PARTITIONS": str(source.keys.partitions),
    }
    env.pop("DATELINE_SEAL_KEY", None)
    try:
        command = [str(DATELINE), "migrate", "--to", there]
        moved = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True)
        assert moved.returncode == 1, moved.stderr
        said = moved.stderr.decode()
        streams = f"{rejected_key(prefix)}, {inbox_key(prefix, 'wire-a')}"
        assert f"the target already holds {streams}: streams the copy writes" in said
        assert "Traceback" not in said
        # Nothing written: the log here takes appends, and the target holds no log.
        assert await migrate.frozen_to(source.redis, source.keys) is None
        to = Keys(prefix, source.keys.partitions)
        assert not await target.exists(to.config, *to.logs())
    finally:
        async for key in target.scan_iter(match=f"{prefix}:*"):
            await target.delete(key)
        await target.aclose()


async def test_every_update_acknowledged_while_the_log_moves_is_on_the_target(
    source: Log, redis_url: str
) -> None:
    """Feeds append through a move, retrying what is refused: every update the source
    acknowledged is on the target once, with its version; every refused one was
    answered `LogMoving` and written nowhere."""
    target = aioredis.Redis.from_url(redis_url.removesuffix("/0") + "/4")
    to = Keys(source.keys.prefix, 16)
    acked: dict[str, int | None] = {}
    refused: list[str] = []
    moving = asyncio.Event()

    async def feed(n: int) -> None:
        story = f"moving-{n}"
        for i in range(10_000):
            uid = f"{story}-{i}"
            try:
                [done] = await source.append([encode(update(subject=story, id=uid))])
            except LogMoving:
                refused.append(uid)
                return
            acked[uid] = done.version
            if i == 20:
                moving.set()
            await asyncio.sleep(0)

    feeds = [asyncio.create_task(feed(n)) for n in range(8)]
    await moving.wait()
    assert await _moved(source, target, to) == []  # freezes, copies, checks
    await asyncio.gather(*feeds)
    try:
        assert len(refused) == 8  # each feed was stopped by the freeze, mid-stream
        moved = Log(target, to)
        for n in range(8):
            story = f"moving-{n}"
            held = {(r.id, r.version) for r in map(_record, await moved.read_story_json(story))}
            mine = {(uid, v) for uid, v in acked.items() if uid.startswith(f"{story}-")}
            assert held == mine  # all acknowledged, once, at their versions; nothing else
            assert not any(uid in {i for i, _ in held} for uid in refused)
    finally:
        async for key in target.scan_iter(match=f"{to.prefix}:*"):
            await target.delete(key)
        await target.aclose()
